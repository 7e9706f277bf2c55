/* The Outlook add-in's task pane: what this booking becomes in One X, the user's choice for it
 * (written to the item's custom properties, which the sync reads), and the user's own rules.
 * Plain script on Office.js; every call to the product carries the token Outlook gives us. */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("addin-config").textContent);
  const words = config.strings;
  const $ = (id) => document.getElementById(id);
  // The custom properties the providers read (calendarsync/rules.py choice_from_dict).
  const CHOICE_KEYS = ["forwarding", "reason", "open_diversion"];
  const LINK_KEY = "mssLink";

  let context = null;
  let item = null;
  let tokenPromise = null;

  function say(text, isError) {
    const status = $("status");
    status.textContent = text || "";
    status.classList.toggle("error", Boolean(isError));
    status.hidden = !text;
  }

  // ----- Office.js, promised

  function officeCall(fn) {
    return new Promise((resolve, reject) => {
      fn((result) => {
        if (result.status === Office.AsyncResultStatus.Succeeded) resolve(result.value);
        else reject(result.error || new Error("Office call failed"));
      });
    });
  }

  async function itemValue(name) {
    const value = item[name];
    if (value && typeof value.getAsync === "function") {
      return officeCall((done) => value.getAsync(done)); // compose mode
    }
    return value; // read mode: a plain value
  }

  // ----- who the user is

  async function naaToken() {
    const pca = await msal.createNestablePublicClientApplication({
      auth: { clientId: config.msal.clientId, authority: config.msal.authority },
    });
    const request = { scopes: config.msal.scopes };
    try {
      return (await pca.acquireTokenSilent(request)).accessToken;
    } catch (silentError) {
      return (await pca.acquireTokenPopup(request)).accessToken;
    }
  }

  async function acquireToken() {
    // Exchange Online: nested app authentication. Exchange Server: the Exchange identity token.
    if (window.msal && Office.context.requirements.isSetSupported("NestedAppAuth", "1.1")) {
      try {
        return await naaToken();
      } catch (error) {
        console.warn("Nested app authentication failed", error);
      }
    }
    return officeCall((done) => Office.context.mailbox.getUserIdentityTokenAsync(done));
  }

  function token() {
    if (!tokenPromise) {
      tokenPromise = acquireToken().catch((error) => {
        tokenPromise = null;
        throw error;
      });
    }
    return tokenPromise;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || words.failed);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(url, method, body) {
    const response = await fetch(url, {
      method: method || "GET",
      headers: {
        Authorization: "Bearer " + (await token()),
        "Accept-Language": config.lang,
        ...(body ? { "Content-Type": "application/json" } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
      credentials: "omit",
      cache: "no-store",
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, answer);
    return answer;
  }

  // ----- the item's custom properties

  async function customProperties() {
    return officeCall((done) => item.loadCustomPropertiesAsync(done));
  }

  async function saveProperties(properties) {
    await officeCall((done) => properties.saveAsync(done));
  }

  function choiceFrom(properties) {
    const forwarding = properties.get("forwarding");
    if (!forwarding) return null;
    return {
      forwarding: forwarding,
      reason: properties.get("reason") || null,
      open_diversion: properties.get("open_diversion") === true,
    };
  }

  // Exchange Server's token names no mailbox: prove once that this mailbox is ours by writing
  // the product's challenge into an item of it, which the product then reads back.
  async function link(challenge) {
    say(words.linking);
    const properties = await customProperties();
    properties.set(LINK_KEY, challenge);
    await saveProperties(properties);
    const itemId = await officeCall((done) => item.saveAsync(done));
    try {
      await api(config.api.link, "POST", {
        mailbox: Office.context.mailbox.userProfile.emailAddress,
        item_id: itemId,
      });
    } finally {
      properties.remove(LINK_KEY);
      await saveProperties(properties);
    }
  }

  async function loadContext() {
    try {
      return await api(config.api.context);
    } catch (error) {
      if (error.status === 403 && error.body.error === "not_linked" && error.body.challenge) {
        await link(error.body.challenge);
        return api(config.api.context);
      }
      throw error;
    }
  }

  // ----- the form

  function option(value, label) {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = label;
    return element;
  }

  function fillReasons(select, selected) {
    select.replaceChildren(...context.reasons.map((r) => option(r.code, r.label)));
    if (selected) select.value = selected;
  }

  function reasonAllowsDiversion(code) {
    const reason = context.reasons.find((r) => r.code === code);
    return !reason || reason.diversion;
  }

  function formChoice() {
    const form = $("choice-form");
    const forwarding = form.elements.forwarding.value;
    if (!forwarding) return null;
    if (forwarding === "skip") return { forwarding: "skip", reason: null, open_diversion: false };
    return {
      forwarding: forwarding,
      reason: form.elements.reason.value || null,
      open_diversion: forwarding === "divert" && $("open-diversion").checked,
    };
  }

  function showChoice(choice) {
    const form = $("choice-form");
    form.elements.forwarding.value = choice ? choice.forwarding : "";
    if (choice && choice.reason) form.elements.reason.value = choice.reason;
    $("open-diversion").checked = Boolean(choice && choice.open_diversion);
    syncChoiceFields();
  }

  function syncChoiceFields() {
    const form = $("choice-form");
    const forwarding = form.elements.forwarding.value;
    const canOpen = context.services.open_diversion && forwarding === "divert";
    $("open-diversion-row").hidden = !context.services.open_diversion;
    $("open-diversion").disabled = !canOpen;
    form.elements.reason.disabled = forwarding === "" || forwarding === "skip";
  }

  async function bookingTimes() {
    const [start, end] = await Promise.all([itemValue("start"), itemValue("end")]);
    let allDay = false;
    if (item.isAllDayEvent) {
      allDay = Boolean(await itemValue("isAllDayEvent").catch(() => false));
    }
    return { start: new Date(start).toISOString(), end: new Date(end).toISOString(), all_day: allDay };
  }

  async function refreshPreview() {
    const times = await bookingTimes();
    const answer = await api(config.api.preview, "POST", {
      ...times,
      show_as: $("show-as").value,
      choice: formChoice(),
    });
    $("preview-label").textContent = words.preview_prefix;
    $("preview-text").textContent = answer.text;
  }

  async function saveChoice(event) {
    event.preventDefault();
    const choice = formChoice();
    const properties = await customProperties();
    for (const key of CHOICE_KEYS) {
      if (choice) properties.set(key, choice[key]);
      else properties.remove(key);
    }
    await saveProperties(properties);
    say(words.saved);
  }

  // ----- my rules

  const RULE_KEYS = ["busy", "oof"];

  function ruleOptions() {
    const options = [option("", words.as_admin), option("info", words.info)];
    if (context.services.diversion) options.push(option("divert", words.divert));
    if (context.services.open_diversion) options.push(option("open", words.open_divert));
    options.push(option("skip", words.skip));
    return options;
  }

  function showRules(rules) {
    for (const key of RULE_KEYS) {
      const rule = rules[key];
      const select = document.querySelector(`[data-rule="${key}"]`);
      select.replaceChildren(...ruleOptions());
      let value = rule ? rule.forwarding : "";
      if (rule && rule.forwarding === "divert" && rule.open_diversion) value = "open";
      select.value = value;
      fillReasons(document.querySelector(`[data-rule-reason="${key}"]`), rule && rule.reason);
    }
    syncRuleFields();
  }

  function syncRuleFields() {
    for (const key of RULE_KEYS) {
      const value = document.querySelector(`[data-rule="${key}"]`).value;
      document.querySelector(`[data-rule-reason="${key}"]`).disabled = !value || value === "skip";
    }
  }

  async function saveRules(event) {
    event.preventDefault();
    const rules = {};
    for (const key of RULE_KEYS) {
      const value = document.querySelector(`[data-rule="${key}"]`).value;
      const reason = document.querySelector(`[data-rule-reason="${key}"]`).value;
      if (!value) rules[key] = null;
      else if (value === "skip") rules[key] = { forwarding: "skip" };
      else {
        rules[key] = {
          forwarding: value === "info" ? "info" : "divert",
          reason: reason,
          open_diversion: value === "open",
        };
      }
    }
    try {
      const answer = await api(config.api.personal_rules, "PUT", { rules: rules });
      showRules(answer.rules);
      say(words.rules_saved);
      await refreshPreview();
    } catch (error) {
      say(error.message, true);
    }
  }

  // ----- start

  async function start() {
    item = Office.context.mailbox.item;
    say(words.signing_in);
    try {
      context = await loadContext();
    } catch (error) {
      if (error.status === 404) say(words.unknown_user, true);
      else if (error.status === 401 || !(error instanceof ApiError)) say(words.no_token, true);
      else say(error.message, true);
      return;
    }
    if (!context.integration.plugin_enabled) {
      say(words.plugin_off);
      return;
    }
    say(context.integration.active ? "" : words.paused);
    fillReasons($("reason"));
    showChoice(choiceFrom(await customProperties()));
    $("booking").hidden = false;
    const form = $("choice-form");
    form.addEventListener("change", (event) => {
      if (event.target.name === "forwarding") syncChoiceFields();
      if (event.target.name === "reason" && !reasonAllowsDiversion(event.target.value)) {
        $("open-diversion").checked = false;
      }
      refreshPreview().catch((error) => say(error.message, true));
    });
    form.addEventListener("submit", (event) =>
      saveChoice(event).catch((error) => say(error.message || words.failed, true)),
    );
    if (context.personal_rules_allowed) {
      const answer = await api(config.api.personal_rules);
      showRules(answer.rules);
      $("my-rules").hidden = false;
      $("rules-form").addEventListener("change", syncRuleFields);
      $("rules-form").addEventListener("submit", saveRules);
    } else {
      $("admin-rules").textContent = words.admin_rules_apply;
      $("admin-rules").hidden = false;
    }
    // Mailbox 1.7: the preview follows the booking when its times change in Outlook.
    if (item.addHandlerAsync && Office.EventType && Office.EventType.AppointmentTimeChanged) {
      item.addHandlerAsync(Office.EventType.AppointmentTimeChanged, () =>
        refreshPreview().catch((error) => say(error.message, true)),
      );
    }
    await refreshPreview();
  }

  Office.onReady(() => {
    start().catch((error) => {
      console.error(error);
      say(words.failed, true);
    });
  });
})();
