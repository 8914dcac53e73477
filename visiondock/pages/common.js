// Page code shared by VisionDock's web pages (the labeling app at /app, the dashboard at /dashboard):
// the API key kept in the tab, api() with ApiError, the DOM helper h(), and number formatting.
// Served as is by both services (visiondock.pages); it touches no page state when imported, so Node's
// test runner can import it too.

// The API key lives in this tab's session storage: forgotten when the tab closes.
export const KEY_STORAGE = "visiondock.apiKey";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY_STORAGE);
  },
  set(key) {
    sessionStorage.setItem(KEY_STORAGE, key);
  },
  clear() {
    sessionStorage.removeItem(KEY_STORAGE);
  },
};

export class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

// A URL of `path` with query `params` (arrays repeat the name; null and undefined are left out).
export function withParams(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const one of [].concat(value)) if (one !== undefined && one !== null) query.append(name, one);
  }
  const text = query.toString();
  return text ? `${path}${path.includes("?") ? "&" : "?"}${text}` : path;
}

// One call of a VisionDock JSON API with the tab's key: the JSON answer (a Blob for other content, null
// for 204). A refusal throws ApiError with the service's `detail` and `code`; a 401 also tells the page
// (the "signed-out" event), which asks for a key again.
export async function api(path, { method = "GET", json, body, headers = {}, params } = {}) {
  const sent = { "X-API-Key": session.key || "", ...headers };
  let payload = body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  const response = await fetch(params ? withParams(path, params) : path, { method, headers: sent, body: payload });
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => ({})) : await response.blob();
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("signed-out"));
    throw new ApiError(response.status, data?.detail || response.statusText, data?.code);
  }
  return data;
}

// Every item of a paged list (`data` and `continuation`), `limit` a page.
export async function everyPage(path, params = {}, limit = 200) {
  const items = [];
  let continuation;
  do {
    const page = await api(path, { params: { ...params, limit, continuation } });
    items.push(...page.data);
    continuation = page.continuation;
  } while (continuation);
  return items;
}

// An element: attributes (`class`, `dataset`, `on<event>` handlers; false, null and undefined left out)
// and children (nodes, or anything else as text; arrays flattened; false, null and undefined left out).
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = value;
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// A fraction as a percentage with one decimal ("87.5 %"); "–" for anything that is not a number.
export function percent(value, digits = 1) {
  return typeof value === "number" && Number.isFinite(value) ? `${(value * 100).toFixed(digits)} %` : "–";
}

// A local date and time, or "–".
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}
