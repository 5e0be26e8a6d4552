// Portal behaviour without inline scripts (CSP: script-src 'self').
// Forms with data-confirm-name ask the user to type the named value before submitting.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var expected = form.getAttribute("data-confirm-name");
  if (!expected) { return; }
  var typed = form.querySelector("[name=confirm_name]");
  if (!typed || typed.value !== expected) {
    event.preventDefault();
    if (typed) { typed.setCustomValidity("Type " + expected + " to confirm."); typed.reportValidity(); }
  } else {
    typed.setCustomValidity("");
  }
});

// A custom validity message makes the browser refuse every later submit before the submit
// event fires, so it must go as soon as the user edits the box: otherwise one typo jams the
// form until the page is reloaded.
document.addEventListener("input", function (event) {
  var box = event.target;
  if (box.name === "confirm_name" && box.form && box.form.hasAttribute("data-confirm-name")) {
    box.setCustomValidity("");
  }
});
