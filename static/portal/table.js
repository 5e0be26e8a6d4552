// The table component's behaviour (templates/_table.html). No inline scripts: CSP is
// script-src 'self'. Everything here also works, more slowly, without JavaScript: the
// column and density forms post and come back.
(function () {
  document.documentElement.classList.add("js");

  // Copy buttons: the full value of a truncated name or id.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain HTTP inside the network has no Clipboard API: fall back to a selection.
    var box = document.createElement("textarea");
    box.value = text;
    box.setAttribute("readonly", "");
    box.className = "visually-hidden";
    document.body.appendChild(box);
    box.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(box);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".dt-copy") : null;
    if (!button) { return; }
    var label = button.getAttribute("aria-label");
    copyText(button.getAttribute("data-copy")).then(function () {
      button.classList.add("copied");
      button.setAttribute("title", "Copied");
      setTimeout(function () { button.classList.remove("copied"); button.setAttribute("title", "Copy"); }, 1500);
    }, function () {
      button.setAttribute("title", "Could not copy: select the text instead");
    });
    button.setAttribute("aria-label", label);
  });

  // Timestamps (<time datetime>, written in UTC) get the local time in their title from
  // forms.js, which does it for every page.

  // Column chooser and density: change the page at once, then save the preference.
  function save(form) {
    var body = new FormData(form);
    return fetch(form.action, {method: "POST", body: body, credentials: "same-origin",
                               headers: {"X-Table-Preference": "1"}});
  }

  function tableOf(form) {
    var section = form.closest(".dt");
    return section ? section.querySelector(".dt-table") : null;
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches(".dt-columns input[type=checkbox]")) { return; }
    var form = box.form, table = tableOf(form);
    if (table) {
      var hidden = [];
      form.querySelectorAll("input[type=checkbox]").forEach(function (other) {
        if (!other.checked) { hidden.push(other.getAttribute("data-col")); }
      });
      table.setAttribute("data-hide", hidden.join(" "));
    }
    // The density form must carry the same columns, or its next post would undo this.
    var section = form.closest(".dt"), density = section && section.querySelector(".dt-density");
    if (density) {
      density.querySelectorAll("input[name=shown]").forEach(function (el) { el.remove(); });
      form.querySelectorAll("input[type=checkbox]:checked").forEach(function (checked) {
        var keep = document.createElement("input");
        keep.type = "hidden"; keep.name = "shown"; keep.value = checked.value;
        density.appendChild(keep);
      });
    }
    save(form);
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("dt-density")) { return; }
    event.preventDefault();
    var table = tableOf(form), field = form.querySelector("input[name=density]");
    var button = form.querySelector("button");
    var wanted = field.value;
    save(form).then(function (response) {
      if (!response.ok) { form.submit(); return; }
      if (table) { table.setAttribute("data-density", wanted); }
      button.setAttribute("aria-pressed", wanted === "compact" ? "true" : "false");
      field.value = wanted === "compact" ? "comfortable" : "compact";
      var other = form.closest(".dt").querySelector(".dt-columns input[name=density]");
      if (other) { other.value = wanted; }
    });
  });
})();
