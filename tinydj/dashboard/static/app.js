// tinydj dashboard: confirmations, select-all, auto-refresh. Works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-confirm], button[data-confirm]").forEach(function (el) {
    var form = el.tagName === "FORM" ? el : el.form;
    el.addEventListener(el.tagName === "FORM" ? "submit" : "click", function (ev) {
      if (!window.confirm(el.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
    void form;
  });

  var all = document.getElementById("pick-all");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=ids]"));
  var label = document.getElementById("picked");
  var buttons = document.querySelectorAll("#bulk button");
  function update() {
    var n = boxes.filter(function (b) { return b.checked; }).length;
    if (label) { label.textContent = n + " selected"; }
    buttons.forEach(function (b) { b.disabled = n === 0; });
    if (all) {
      all.checked = n > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
    }
  }
  if (all) {
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      update();
    });
  }
  boxes.forEach(function (b) { b.addEventListener("change", update); });
  if (label) { update(); }

  var auto = document.getElementById("autorefresh");
  if (auto) {
    var key = "tinydj-autorefresh";
    auto.checked = window.localStorage && localStorage.getItem(key) === "1";
    var timer = null;
    function arm() {
      if (timer) { clearTimeout(timer); timer = null; }
      if (auto.checked) { timer = setTimeout(function () { location.reload(); }, 5000); }
    }
    auto.addEventListener("change", function () {
      if (window.localStorage) { localStorage.setItem(key, auto.checked ? "1" : "0"); }
      arm();
    });
    arm();
  }
});
