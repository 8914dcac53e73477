// The status line the views speak through; h() and percent() come from the shared page code.

export { h, percent } from "/app/common/common.js";

export function say(message, kind = "info") {
  const status = document.getElementById("status");
  status.textContent = message;
  status.dataset.kind = kind;
}

export function fail(error) {
  say(error.message || String(error), "error");
}
