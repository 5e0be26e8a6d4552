// The console shell's menus (<details data-menu>): one open at a time, closed by a click
// elsewhere or by Escape (which gives focus back to the menu's button). Without script
// they still open and close with their button.
(function () {
  function openMenus() { return document.querySelectorAll("details[data-menu][open]"); }

  document.addEventListener("click", function (event) {
    openMenus().forEach(function (menu) {
      if (!menu.contains(event.target)) { menu.removeAttribute("open"); }
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    openMenus().forEach(function (menu) {
      menu.removeAttribute("open");
      menu.querySelector("summary").focus();
    });
  });
})();
