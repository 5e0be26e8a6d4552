// Object pages and forms, without inline scripts (CSP: script-src 'self').
(function () {
  "use strict";

  // Every <time datetime> shows UTC as text; hovering it shows the reader's local time.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) { return; }
      el.title = when.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
        second: "2-digit", timeZoneName: "short"}) + " (your local time)";
    });
  }

  // Tags as rows of name and value: add and remove rows. Without JavaScript the form has a
  // few empty rows, and the server reads them the same way.
  function renumber(editor) {
    editor.querySelectorAll("[data-tag-row]").forEach(function (row, index) {
      var n = index + 1;
      row.querySelector("input[name=tags_name]").setAttribute("aria-label", "Tag " + n + " name");
      row.querySelector("input[name=tags_value]").setAttribute("aria-label", "Tag " + n + " value");
      var remove = row.querySelector("[data-tag-remove]");
      if (remove) { remove.setAttribute("aria-label", "Remove tag " + n); }
    });
    var add = editor.querySelector("[data-tag-add]");
    var max = parseInt(editor.getAttribute("data-max-rows") || "15", 10);
    if (add) { add.disabled = editor.querySelectorAll("[data-tag-row]").length >= max; }
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-tag-add]");
    var remove = event.target.closest("[data-tag-remove]");
    if (add) {
      var editor = add.closest("[data-tag-editor]");
      var rows = editor.querySelectorAll("[data-tag-row]");
      var template = rows[rows.length - 1];
      var row = template.cloneNode(true);
      row.querySelectorAll("input").forEach(function (input) { input.value = ""; input.removeAttribute("id"); });
      template.parentNode.insertBefore(row, template.nextSibling);
      renumber(editor);
      row.querySelector("input[name=tags_name]").focus();
    } else if (remove) {
      var editor2 = remove.closest("[data-tag-editor]");
      var row2 = remove.closest("[data-tag-row]");
      if (editor2.querySelectorAll("[data-tag-row]").length > 1) {
        var next = row2.nextElementSibling || row2.previousElementSibling;
        row2.remove();
        renumber(editor2);
        var focus = next && next.querySelector("input[name=tags_name]");
        if (focus) { focus.focus(); }
      } else {
        row2.querySelectorAll("input").forEach(function (input) { input.value = ""; });
      }
    }
  });

  function ready() {
    localTimes(document);
    document.querySelectorAll("[data-tag-editor]").forEach(function (editor) {
      editor.setAttribute("data-enhanced", "");
      // Rows beyond the first empty one are only for browsers without JavaScript.
      var empty = Array.prototype.filter.call(editor.querySelectorAll("[data-tag-row]"), function (row) {
        return Array.prototype.every.call(row.querySelectorAll("input"), function (i) { return i.value === ""; });
      });
      empty.slice(1).forEach(function (row) { row.remove(); });
      renumber(editor);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
  // Content swapped in by htmx gets local times too.
  document.addEventListener("htmx:afterSwap", function (event) { localTimes(event.target); });
})();
