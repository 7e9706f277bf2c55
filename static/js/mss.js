// Behaviour that must not live inline (the Content-Security-Policy allows no inline script).

// The language picker submits itself; without JavaScript its <noscript> button does.
document.addEventListener("change", (event) => {
  if (event.target.matches("#language-select")) {
    event.target.form.submit();
  }
});
