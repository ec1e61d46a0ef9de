// sideline dashboard: refresh the page's live part in place every few seconds.
// Pages work without this script; it only saves the reload. The "live" switch pauses it
// (remembered in localStorage); it also waits while a box is ticked or a field has focus,
// so a refresh never throws away a selection or what is being typed.
(function () {
  "use strict";
  var main = document.getElementById("live");
  var toggle = document.getElementById("live-toggle");
  if (!main || !toggle) { return; }
  var KEY = "sideline-live";
  toggle.checked = window.localStorage.getItem(KEY) !== "off";
  toggle.addEventListener("change", function () {
    window.localStorage.setItem(KEY, toggle.checked ? "on" : "off");
  });
  document.addEventListener("submit", function (event) {
    // the pressed button's own question wins over its form's
    var button = event.submitter;
    var question = (button && button.getAttribute("data-confirm")) ||
      event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  function busy() {
    if (main.querySelector("input[type=checkbox]:checked")) { return true; }
    var focused = document.activeElement;
    return focused && main.contains(focused) && /INPUT|TEXTAREA|SELECT/.test(focused.tagName);
  }
  function refresh() {
    if (!toggle.checked || busy() || document.hidden) { return; }
    var request = new XMLHttpRequest();
    request.open("GET", window.location.href);
    request.setRequestHeader("X-Sideline-Fragment", "1");
    request.onload = function () {
      if (request.status === 200 && !busy()) {
        main.innerHTML = request.responseText;
        main.setAttribute("data-refreshed", String(Date.now()));
      }
    };
    request.send();
  }
  var seconds = parseFloat(main.getAttribute("data-refresh-s")) || 5;
  window.setInterval(refresh, seconds * 1000);
}());
