// oauthimap admin: small progressive enhancements. Every page works without this file.
"use strict";
document.addEventListener("click", function (event) {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.querySelector(copy.getAttribute("data-copy"));
    if (!source) return;
    const text = source.value !== undefined ? source.value : source.textContent;
    const done = function () {
      copy.textContent = "Copied";
      setTimeout(function () { copy.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { source.select && source.select(); });
    } else if (source.select) {
      source.select();
      document.execCommand("copy");
      done();
    }
  }
});
document.addEventListener("submit", function (event) {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
// Show the fields that belong to the chosen provider or sink.
function syncChoices() {
  document.querySelectorAll("[data-show-when]").forEach(function (el) {
    const [name, values] = el.getAttribute("data-show-when").split("=");
    const field = document.querySelector("[name='" + name + "']");
    if (!field) return;
    el.hidden = !values.split(",").includes(field.value);
  });
  // Placeholders that depend on a choice: data-placeholders="value=text,...".
  document.querySelectorAll("[data-placeholder-from]").forEach(function (el) {
    const field = document.querySelector("[name='" + el.getAttribute("data-placeholder-from") + "']");
    if (!field) return;
    for (const pair of el.getAttribute("data-placeholders").split(",")) {
      const at = pair.indexOf("=");
      if (pair.slice(0, at) === field.value) el.placeholder = pair.slice(at + 1);
    }
  });
}
document.addEventListener("change", syncChoices);
document.addEventListener("DOMContentLoaded", syncChoices);
document.addEventListener("htmx:afterSwap", syncChoices);
// The message's HTML body tells its height from inside its sandboxed frame (an opaque origin):
// the frame is sized to it, so the message shows whole, without a scrollbar of its own.
window.addEventListener("message", function (event) {
  const frame = document.getElementById("html-body");
  if (!frame || event.source !== frame.contentWindow) return;
  const height = event.data && event.data.oauthimapFrameHeight;
  if (typeof height !== "number" || !isFinite(height) || height <= 0) return;
  frame.style.height = Math.min(Math.ceil(height) + 4, 50000) + "px";
});
