// Likely label errors: labeled images whose given label the project's model, judged by the fold models that
// never saw them, found unlikely. The registry keeps the list its training found with each version
// (GET /v1/models/{model}/versions/{version}/label-issues); the grid shows the newest version's, most likely
// first, so a person can open each image and fix its label.
import { api, projectPath, registry } from "./api.js";

// At most this many are shown: the list is ranked, and the first ones are what a person fixes first.
export const SHOWN = 200;

const modelPath = (project) => `/v1/models/${encodeURIComponent(project)}`;

// The newest version of the project's model that stores a list ({version, list}), or null.
export async function newestIssueList(project) {
  // The model exists once a run has registered a version: the runs say so without asking for a model that
  // does not exist yet (a 404 each time the list is shown).
  const runs = await registry(`/v1/runs?model=${encodeURIComponent(project)}&limit=50`);
  if (!runs.data.some((run) => run.version)) return null;
  const versions = await registry(`${modelPath(project)}/versions?limit=20`);
  const listed = versions.data.find((v) => v.metrics?.label_issues);
  if (!listed) return null;
  const list = await registry(`${modelPath(project)}/versions/${listed.version}/label-issues?limit=${SHOWN}`);
  return { version: listed.version, list };
}

// The listed images in rank order, each once (a multilabel image may be listed for several tags), with what
// the model says about it; images deleted since are left out.
export async function issueImages(project, found) {
  const byImage = new Map();
  for (const item of found.list.items) {
    if (!byImage.has(item.image_id)) byImage.set(item.image_id, []);
    byImage.get(item.image_id).push(item);
  }
  const images = await Promise.all(
    [...byImage.keys()].map((id) =>
      api(`${projectPath(project)}/images/${id}`).catch((error) => {
        if (error.status === 404) return null;
        throw error;
      }),
    ),
  );
  return images.filter(Boolean).map((image) => ({ ...image, issues: byImage.get(image.id) }));
}

const share = (p) => (typeof p === "number" ? `${Math.round(p * 100)} %` : "?");

// What the model says about one listed label, in words.
export function issueWords(item) {
  if (item.label !== undefined && item.label !== null) {
    return item.given
      ? `tagged ${item.label}, but the model gives it ${share(item.probability)}`
      : `not tagged ${item.label}, but the model gives it ${share(item.probability)}`;
  }
  return `labeled ${item.given} (${share(item.given_probability)}); the model prefers ${item.suggested} (${share(item.suggested_probability)})`;
}

// Whether the image's labels have changed since the version was trained, so the issue may be fixed.
export function fixedSince(image, item) {
  if (item.label !== undefined && item.label !== null) return image.tags.includes(item.label) !== item.given;
  return !image.tags.includes(item.given);
}
