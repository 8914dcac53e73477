// A project's own views beside its images: its tags (tags.js), import and export (dataset.js), and its
// deletion, asked first with the project's name typed.
import { api, projectPath } from "./api.js";
import { ask } from "./dialog.js";
import { fail, h, say } from "./ui.js";

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

export { datasetView } from "./dataset.js";
export { tagsView } from "./tags.js";

// Deletes the project with its images, tags, thumbnails and review items once the person typed its name;
// true when it is gone.
export async function deleteProject(project) {
  let stats = null;
  try {
    stats = await api(`${projectPath(project)}/stats`);
  } catch (e) {
    fail(e);
    return false;
  }
  const { ok } = await ask({
    title: `Delete project ${project}?`,
    message: [
      h(
        "p",
        {},
        `Its ${plural(stats.image_count, "image")} (${stats.labeled_count} labeled), `,
        `${plural(Object.keys(stats.tag_counts).length, "tag")}, thumbnails and review queue are deleted. `,
        "This cannot be undone. ",
        `Versions of model ${project} in the registry are kept.`,
      ),
      h("p", {}, "Type the project's name to confirm."),
    ],
    field: { label: "Project name", placeholder: project },
    mustType: project,
    confirm: "Delete project",
    danger: true,
  });
  if (!ok) {
    say("Nothing deleted.");
    return false;
  }
  try {
    say(`Deleting project ${project}…`);
    const answer = await api(projectPath(project), { method: "DELETE", params: { confirm: true } });
    say(`Deleted project ${project}: ${answer.images_deleted} images, ${answer.review_items_deleted} review items.`);
    return true;
  } catch (e) {
    fail(e);
    return false;
  }
}
