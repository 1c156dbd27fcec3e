// memkern web UI: small enhancements only; every page works without this file.
(function () {
  "use strict";
  // "/" focuses the search or first filter field, as in many web apps (not while typing).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (document.activeElement && document.activeElement.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    var field = document.getElementById("q") || document.querySelector("form.filters input:not([type=hidden])");
    if (field) { event.preventDefault(); field.focus(); }
  });
  // A second look before a destructive form is sent (the server-side confirmation page stays).
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (button && button.classList.contains("danger") && !window.confirm("Delete this memory for good?")) {
      event.preventDefault();
    }
  });
})();
