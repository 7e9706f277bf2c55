// Behaviour that must not live inline (the Content-Security-Policy allows no inline script).

// The language picker is a plain form with its own button: nothing here submits it, so the
// arrow keys can move through the options without switching the language.

// Unsaved edits. A form marked [data-unsaved-guard] turns dirty on its first change (the
// server marks a form it sends back with errors as dirty already). While it is dirty, leaving
// the page asks through the browser's own dialog, and an HTMX request that would replace the
// form (another rule's Edit, Move, Delete, Add rule) asks with confirm(). Saving the form, or
// its [data-discard] Cancel, lets the edit go without asking.
const GUARDED_FORM = "form[data-unsaved-guard]";

function dirtyForm() {
  return document.querySelector(`${GUARDED_FORM}[data-dirty]`);
}

function markDirty(event) {
  const form = event.target.closest ? event.target.closest(GUARDED_FORM) : null;
  if (form) {
    form.dataset.dirty = "true";
  }
}

document.addEventListener("input", markDirty);
document.addEventListener("change", markDirty);

document.addEventListener("submit", (event) => {
  if (event.target.matches(GUARDED_FORM)) {
    delete event.target.dataset.dirty;
  }
});

document.addEventListener("click", (event) => {
  const discard = event.target.closest ? event.target.closest("[data-discard]") : null;
  const form = discard ? discard.closest(GUARDED_FORM) : null;
  if (form) {
    delete form.dataset.dirty;
  }
});

window.addEventListener("beforeunload", (event) => {
  if (dirtyForm()) {
    event.preventDefault();
    event.returnValue = ""; // older browsers want a value to show their dialog
  }
});

document.addEventListener("htmx:confirm", (event) => {
  const form = dirtyForm();
  const { elt, target } = event.detail;
  // The form's own save and preview, and swaps elsewhere (the preview), go ahead.
  if (!form || form.contains(elt) || !target || !target.contains(form)) {
    return;
  }
  event.preventDefault();
  if (window.confirm(form.dataset.unsavedMessage)) {
    event.detail.issueRequest(true);
  }
});

// Copy buttons beside code blocks (Exchange On Prem set-up). They are [hidden] in the page,
// since they need this script; shown here. The button says "Copied" for a moment and a live
// region beside the blocks says it too. Where the clipboard is not available (a plain-http
// address), the code is selected instead, for Ctrl+C.
const COPY_BUTTON = "button[data-copy]";
const COPIED_FOR_MS = 2000;

function revealCopyButtons(root) {
  root.querySelectorAll(COPY_BUTTON).forEach((button) => {
    button.hidden = false;
  });
}

function announceCopy(button, text) {
  const box = button.closest("[data-copied-label]");
  const status = box ? box.querySelector("#copy-status") : null;
  if (status) {
    status.textContent = text;
  }
}

function selectText(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

async function copyCode(button) {
  const code = document.getElementById(button.dataset.copy);
  const box = button.closest("[data-copied-label]");
  if (!code || !box) {
    return;
  }
  try {
    await navigator.clipboard.writeText(code.textContent);
  } catch {
    selectText(code);
    announceCopy(button, box.dataset.copyFailedLabel);
    return;
  }
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  button.textContent = box.dataset.copiedLabel;
  button.classList.add("copied");
  announceCopy(button, box.dataset.copiedLabel);
  window.setTimeout(() => {
    button.textContent = label;
    button.classList.remove("copied");
  }, COPIED_FOR_MS);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest ? event.target.closest(COPY_BUTTON) : null;
  if (button) {
    copyCode(button);
  }
});

revealCopyButtons(document);
document.addEventListener("htmx:load", (event) => revealCopyButtons(event.target));

// After a save answered with HX-Location, htmx swaps the whole page in without a reload.
// Like a page load, it starts at the top: focus goes to the confirmation ("Sparat"), so it is
// seen and read out even when the form was further down.
document.addEventListener("htmx:afterSettle", (event) => {
  if (event.detail.target !== document.body) {
    return;
  }
  const messages = document.querySelector("#main .messages");
  if (messages) {
    messages.tabIndex = -1;
    messages.focus();
  }
});
