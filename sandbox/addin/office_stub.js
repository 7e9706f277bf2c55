/* A stand-in for Office.js in Outlook, for the tests and the sandbox demo: just the calls the
 * task pane makes, with Outlook's shapes (AsyncResult, CustomProperties), and the host side of
 * nested app authentication (window.nestedAppAuthBridge) that MSAL.js talks to.
 *
 * It plays one open appointment of one mailbox in a sandbox. Saving custom properties stores
 * them on that sandbox event or item, as Outlook stores them in the mailbox. Configuration:
 * window.__officeStubConfig, or the page's fragment `#office-stub=<JSON, URI-encoded>`:
 *   {mode: "graph"|"ews", sandbox: "<base URL>", mailbox, displayName, tenant, itemId,
 *    start, end (ISO), allDay, addinId, language}
 */
(function () {
  "use strict";

  function readConfig() {
    if (window.__officeStubConfig) return window.__officeStubConfig;
    const match = /[#&]office-stub=([^&]*)/.exec(window.location.hash);
    if (!match) throw new Error("Office.js stub: no configuration");
    return JSON.parse(decodeURIComponent(match[1]));
  }

  const config = readConfig();
  const graph = config.mode !== "ews";
  const Succeeded = "succeeded";
  const Failed = "failed";

  function result(status, value, error) {
    return { status: status, value: value, error: error, asyncContext: undefined };
  }

  function later(callback, status, value, error) {
    if (typeof callback === "function") {
      setTimeout(() => callback(result(status, value, error)), 0);
    }
  }

  function sandboxCall(path, body) {
    return fetch(config.sandbox.replace(/\/$/, "") + path, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then((response) => {
      if (!response.ok) throw new Error(`sandbox ${path}: HTTP ${response.status}`);
      return response.json();
    });
  }

  function itemRef() {
    return graph
      ? { mailbox: config.mailbox, tenant: config.tenant, event_id: config.itemId }
      : { mailbox: config.mailbox, item_id: config.itemId };
  }

  // ----- the open appointment (compose mode: the organiser's form)

  const handlers = {};
  const times = { start: new Date(config.start), end: new Date(config.end) };

  function timeField(name) {
    return {
      getAsync(options, callback) {
        later(callback || options, Succeeded, new Date(times[name].getTime()));
      },
      setAsync(value, options, callback) {
        times[name] = new Date(value);
        later(callback || options, Succeeded);
        fire("olkAppointmentTimeChanged", { start: times.start, end: times.end });
      },
    };
  }

  function fire(type, args) {
    for (const handler of handlers[type] || []) handler({ type: type, ...args });
  }

  class CustomProperties {
    constructor(values) {
      this._values = { ...values };
    }
    get(name) {
      return this._values[name];
    }
    set(name, value) {
      this._values[name] = value;
    }
    remove(name) {
      delete this._values[name];
    }
    getAll() {
      return { ...this._values };
    }
    saveAsync(options, callback) {
      const body = { ...itemRef(), addin_id: config.addinId, properties: this._values };
      sandboxCall("/_sandbox/addin/custom-properties", body).then(
        () => later(callback || options, Succeeded),
        (error) => later(callback || options, Failed, undefined, { name: "Error", message: String(error) }),
      );
    }
  }

  const item = {
    itemType: "appointment",
    start: timeField("start"),
    end: timeField("end"),
    isAllDayEvent: {
      getAsync(options, callback) {
        later(callback || options, Succeeded, Boolean(config.allDay));
      },
    },
    loadCustomPropertiesAsync(callback) {
      const query = new URLSearchParams({ ...itemRef(), addin_id: config.addinId });
      for (const [key, value] of [...query]) if (value === "undefined") query.delete(key);
      sandboxCall("/_sandbox/addin/custom-properties?" + query).then(
        (answer) => later(callback, Succeeded, new CustomProperties(answer.properties || {})),
        (error) => later(callback, Failed, undefined, { name: "Error", message: String(error) }),
      );
    },
    saveAsync(options, callback) {
      later(callback || options, Succeeded, config.itemId);
    },
    addHandlerAsync(type, handler, options, callback) {
      (handlers[type] = handlers[type] || []).push(handler);
      later(callback || options, Succeeded);
    },
  };

  // ----- the mailbox and the host

  const mailbox = {
    item: item,
    userProfile: { emailAddress: config.mailbox, displayName: config.displayName || config.mailbox },
    getUserIdentityTokenAsync(options, callback) {
      const done = callback || options;
      if (graph) {
        // Exchange Online has turned legacy Exchange tokens off.
        later(done, Failed, undefined, { name: "GenericTokenError", code: 9018, message: "Legacy tokens are off." });
        return;
      }
      const aud = window.location.origin + window.location.pathname;
      sandboxCall("/_sandbox/addin/identity-token", { mailbox: config.mailbox, aud: aud }).then(
        (answer) => later(done, Succeeded, answer.token),
        (error) => later(done, Failed, undefined, { name: "GenericTokenError", message: String(error) }),
      );
    },
  };

  const sets = { mailbox: "1.8", nestedappauth: graph ? "1.1" : null };

  function isSetSupported(name, version) {
    const have = sets[String(name).toLowerCase()];
    return Boolean(have) && parseFloat(have) >= parseFloat(version || "1.1");
  }

  let ready = null;

  window.Office = {
    AsyncResultStatus: { Succeeded: Succeeded, Failed: Failed },
    EventType: { AppointmentTimeChanged: "olkAppointmentTimeChanged" },
    HostType: { Outlook: "Outlook" },
    context: {
      displayLanguage: config.language || "sv-SE",
      requirements: { isSetSupported: isSetSupported },
      mailbox: mailbox,
    },
    onReady(callback) {
      ready = ready || new Promise((resolve) => setTimeout(() => resolve({ host: "Outlook", platform: "PC" }), 0));
      return ready.then((info) => {
        if (typeof callback === "function") callback(info);
        return info;
      });
    },
  };

  // For the demo page: change the appointment's times as the user would in Outlook.
  window.officeStub = {
    setTimes(start, end) {
      item.start.setAsync(new Date(start));
      item.end.setAsync(new Date(end));
    },
  };

  // ----- nested app authentication: the host's side of MSAL.js's bridge

  if (graph) {
    const listeners = [];
    const answer = (message) => {
      const text = JSON.stringify({ messageType: "NestedAppAuthResponse", ...message });
      setTimeout(() => listeners.forEach((listener) => listener(text)), 0);
    };
    window.nestedAppAuthBridge = {
      addEventListener(type, listener) {
        if (type === "message") listeners.push(listener);
      },
      removeEventListener(type, listener) {
        const index = listeners.indexOf(listener);
        if (index >= 0) listeners.splice(index, 1);
      },
      postMessage(text) {
        const request = JSON.parse(text);
        const base = { requestId: request.requestId };
        if (request.method === "GetInitContext") {
          answer({
            ...base,
            success: true,
            initContext: { sdkName: "office-stub", sdkVersion: "1.0", capabilities: { queryAccount: false } },
          });
          return;
        }
        if (request.method !== "GetToken" && request.method !== "GetTokenPopup") {
          answer({ ...base, success: false, error: { status: "NESTED_APP_AUTH_UNAVAILABLE" } });
          return;
        }
        const params = request.tokenParams || {};
        sandboxCall("/_sandbox/addin/token", {
          mailbox: config.mailbox,
          tenant: config.tenant,
          client_id: params.clientId,
          scope: params.scope,
        }).then(
          (token) =>
            answer({
              ...base,
              success: true,
              token: {
                access_token: token.access_token,
                id_token: token.id_token,
                expires_in: token.expires_in,
                scope: token.scope,
              },
              account: token.account,
            }),
          (error) =>
            answer({ ...base, success: false, error: { status: "TRANSIENT_ERROR", description: String(error) } }),
        );
      },
    };
  }
})();
