// The annotation API (and the registry through /app/registry): paths, images and tags of a project.
// The calls themselves, the key and ApiError are the page code shared with the dashboard (common.js).
import { api } from "/app/common/common.js";

export { ApiError, api, session } from "/app/common/common.js";

export const registry = (path, options) => api(`/app/registry${path}`, options);

export const projectPath = (project) => `/v1/projects/${encodeURIComponent(project)}`;

// Object URLs of fetched images (the key travels in a header, so <img src> cannot fetch them itself).
const urls = new Map();

export async function imageUrl(path) {
  if (!urls.has(path)) {
    urls.set(
      path,
      api(path).then((blob) => URL.createObjectURL(blob)),
    );
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
