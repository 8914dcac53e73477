// The annotation API (and the registry through /app/registry) with the key kept in session storage.

const KEY = "visiondock.apiKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const sent = { "X-API-Key": session.key || "", ...headers };
  let payload = body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers: sent, body: payload });
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("signed-out"));
    throw new ApiError(response.status, (data && data.detail) || response.statusText, data && data.code);
  }
  return data;
}

export const registry = (path, options) => api(`/app/registry${path}`, options);

export const projectPath = (project) => `/v1/projects/${encodeURIComponent(project)}`;

// Object URLs of fetched images (the key travels in a header, so <img src> cannot fetch them itself).
const urls = new Map();

export async function imageUrl(path) {
  if (!urls.has(path)) {
    urls.set(path, api(path).then((blob) => URL.createObjectURL(blob)));
  }
  try {
    return await urls.get(path);
  } catch (error) {
    urls.delete(path);
    throw error;
  }
}

export const thumbnailUrl = (project, id) => imageUrl(`${projectPath(project)}/images/${id}/thumbnail`);
export const contentUrl = (project, id) => imageUrl(`${projectPath(project)}/images/${id}/content`);

export async function allTags(project) {
  return (await api(`${projectPath(project)}/tags`)).data.map((t) => t.name);
}
