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

// The create-key form (data-key-presets): a preset fills the type, size, curve and
// operations it stands for; changing any of them by hand makes the request custom, so the
// preset never overrides what the user chose.
(function () {
  var SHAPE = ["kty", "key_size", "curve", "key_ops"];

  function opsBoxes(form) { return form.querySelectorAll("input[name=key_ops]"); }

  function fitToType(form) {
    var kty = form.elements.kty, option = kty.options[kty.selectedIndex];
    var allowed = (option && option.getAttribute("data-key-ops") || "").split(" ");
    var ec = kty.value === "EC-HSM", typed = kty.value !== "";
    form.elements.key_size.disabled = ec;
    form.elements.curve.disabled = typed && !ec;
    if (ec) { form.elements.key_size.value = ""; } else if (typed) { form.elements.curve.value = ""; }
    opsBoxes(form).forEach(function (box) {
      var ok = !typed || allowed.indexOf(box.value) >= 0;
      box.disabled = !ok;
      if (!ok) { box.checked = false; }
    });
  }

  function applyPreset(form) {
    var select = form.elements.preset, option = select.options[select.selectedIndex];
    if (!option || !option.getAttribute("data-kty")) { return; }
    form.elements.kty.value = option.getAttribute("data-kty");
    fitToType(form);
    form.elements.key_size.value = option.getAttribute("data-key-size");
    form.elements.curve.value = option.getAttribute("data-curve");
    var ops = option.getAttribute("data-key-ops").split(" ");
    opsBoxes(form).forEach(function (box) { box.checked = ops.indexOf(box.value) >= 0; });
  }

  document.addEventListener("change", function (event) {
    var field = event.target, form = field.form;
    if (!form || !form.hasAttribute("data-key-presets")) { return; }
    if (field.name === "preset") {
      applyPreset(form);
    } else if (SHAPE.indexOf(field.name) >= 0) {
      form.elements.preset.value = "";
      if (field.name === "kty") {
        // Another type: its size, curve and operations start from the type's defaults.
        form.elements.key_size.value = "";
        form.elements.curve.value = "";
        opsBoxes(form).forEach(function (box) { box.checked = false; });
        fitToType(form);
      }
    }
  });

  document.querySelectorAll("form[data-key-presets]").forEach(function (form) {
    // A fresh form shows what its preset stands for; a returned form keeps what was sent.
    if (form.elements.kty.value === "") { applyPreset(form); }
    fitToType(form);
  });
})();

// The rotation-policy form (data-rotation-policy): when the fields as typed would stop
// automatic rotation (or clear the policy), show the typed confirmation the server asks for.
(function () {
  // A duration is a number box (<name>_n) and a unit; a plain <name> box is read too.
  function filled(form, name) {
    var box = form.elements[name + "_n"] || form.elements[name];
    return !!box && box.value.trim() !== "";
  }

  function showRemoval(form) {
    var box = form.querySelector("[data-confirm-removal]");
    if (!box) { return; }
    var rotates = filled(form, "rotate_after_create") || filled(form, "rotate_before_expiry");
    var empty = !rotates && !filled(form, "notify_before_expiry") && !filled(form, "expires_after");
    var removing = (form.getAttribute("data-rotates") === "1" && !rotates) ||
                   (form.getAttribute("data-has-policy") === "1" && empty);
    box.hidden = !removing && !box.hasAttribute("data-error");
  }

  document.addEventListener("input", function (event) {
    var form = event.target.form;
    if (form && form.hasAttribute("data-rotation-policy")) { showRemoval(form); }
  });
  document.querySelectorAll("form[data-rotation-policy]").forEach(showRemoval);
})();
