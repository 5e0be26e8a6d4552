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
