// The grid's selection bar: how many images are selected, selecting the page or everything the filter
// matches, and changing the selected images at once (add or remove a tag, put them in a split, delete
// them after a confirmation). Each change goes to the API in pieces of 500 images with a progress bar,
// and ends with a message of what changed and what failed (the API's reason for each).
import { api, projectPath } from "./api.js";
import { ask } from "./dialog.js";
import { chunks, failures } from "./transfers.js";
import { fail, h, say } from "./ui.js";

const PIECE = 500; // ids per bulk call (the API takes up to 1,000)

const images = (n) => `${n} image${n === 1 ? "" : "s"}`;

// project, type, tags: the project's; selection: the grid's GridSelection; allMatching(): every id the
// filter matches; changed({deleted}): the grid shows the images anew; nameOf(id): an image's file name
// when the grid has shown it. Answers {element, update, deleteSelected}: update() after the selection or
// the grid changed.
export function bulkBar({ project, type, tags, selection, allMatching, changed, nameOf }) {
  const count = h("p", { class: "selected-count", id: "selected-count", "aria-live": "polite" });
  const progress = h("progress", { class: "bulk-progress", hidden: true, "aria-label": "Bulk change" });
  const button = (text, onclick, extra = {}) => h("button", { type: "button", onclick, ...extra }, text);
  const selectPage = button("Select page", () => {
    selection.selectAll();
    update();
  });
  const selectMatching = button("Select all matching", async () => {
    selectMatching.disabled = true;
    say("Finding every image the filter matches…");
    try {
      const ids = await allMatching();
      selection.selectAll(ids);
      say(`Selected all ${images(ids.length)} the filter matches.`);
    } catch (e) {
      fail(e);
    } finally {
      selectMatching.disabled = false;
      update();
    }
  });
  const clear = button("Clear selection", () => {
    selection.clear();
    update();
  });

  const classification = type !== "detection";
  const tagChoice = h(
    "select",
    { id: "bulk-tag" },
    tags.map((t) => h("option", { value: t }, t)),
  );
  const addTag = button(
    type === "multiclass" ? "Set on selected" : "Add to selected",
    () => changeTags({ add: [tagChoice.value] }),
    {
      title: type === "multiclass" ? "Replaces each selected image's tag" : "Adds the tag to each selected image",
    },
  );
  const removeTag = button("Remove from selected", () => changeTags({ remove: [tagChoice.value] }));
  const splitChoice = h(
    "select",
    { id: "bulk-split" },
    h("option", { value: "train" }, "train"),
    h("option", { value: "test" }, "test"),
    h("option", { value: "none" }, "none"),
  );
  const setSplit = button("Move selected", () => changeSplit(splitChoice.value));
  const remove = button("Delete selected…", () => deleteSelected(), { class: "quiet-danger" });
  const actions = [...(classification && tags.length ? [addTag, removeTag] : []), setSplit, remove];

  const element = h(
    "section",
    { class: "bulk", "aria-label": "Selected images" },
    count,
    h("div", { class: "bulk-row" }, selectPage, selectMatching, clear),
    h(
      "div",
      { class: "bulk-row", role: "group", "aria-label": "Change the selected images" },
      classification
        ? tags.length
          ? [h("label", { for: "bulk-tag" }, "Tag"), tagChoice, addTag, removeTag]
          : h("span", { class: "help" }, "Add tags to tag images in bulk.")
        : h("span", { class: "help" }, "Detection images are labeled with boxes, one image at a time."),
      h("label", { for: "bulk-split" }, "Split"),
      splitChoice,
      setSplit,
      remove,
    ),
    progress,
  );

  let busy = false;
  function update() {
    const n = selection.size;
    const hidden = selection.hidden;
    count.textContent = n
      ? `${images(n)} selected${hidden ? ` (${hidden} not shown with this filter)` : ""}.`
      : "No images selected. Tick a photo's box (Shift: a range), Ctrl or ⌘+click a photo, or use Space and the arrow keys; Ctrl+A selects the page.";
    for (const b of actions) b.disabled = busy || !n;
    for (const b of [selectPage, clear]) b.disabled = busy;
    clear.disabled = busy || !n;
  }

  // `call(ids)` for every piece of the selection, with a progress bar; the answers' counts added up. A
  // refused piece stops the rest (`error`): what the pieces before it changed is still reported.
  async function inPieces(doing, call) {
    const ids = selection.ids;
    const total = { updated: 0, unchanged: 0, deleted: 0, failed: 0, results: [] };
    busy = true;
    update();
    progress.hidden = false;
    progress.max = ids.length;
    progress.value = 0;
    try {
      for (const piece of chunks(ids, PIECE)) {
        say(`${doing} ${Math.min(progress.value + piece.length, ids.length)} of ${images(ids.length)}…`);
        let answer;
        try {
          answer = await call(piece);
        } catch (error) {
          total.error = error;
          break;
        }
        for (const key of ["updated", "unchanged", "deleted", "failed"]) total[key] += answer[key] || 0;
        total.results.push(...answer.results);
        progress.value += piece.length;
      }
      return total;
    } finally {
      busy = false;
      progress.hidden = true;
      update();
    }
  }

  function report(summary, total) {
    if (total.error && !total.results.length) {
      fail(total.error);
      return;
    }
    const failed = failures(total);
    const stopped = total.error ? `; stopped: ${total.error.message}` : "";
    say(`${summary}${failed ? `; ${failed}` : ""}${stopped}.`, failed || stopped ? "error" : "info");
  }

  async function changeTags(body) {
    const tag = (body.add || body.remove)[0];
    try {
      const total = await inPieces(body.add ? "Tagging" : "Untagging", (ids) =>
        api(`${projectPath(project)}/images/bulk/tags`, { method: "POST", json: { image_ids: ids, ...body } }),
      );
      const already = total.unchanged ? `; ${total.unchanged} had it already` : "";
      const without = total.unchanged ? `; ${total.unchanged} did not have it` : "";
      const summary = body.add
        ? `${type === "multiclass" ? "Set the tag of" : "Tagged"} ${images(total.updated)} ${tag}${already}`
        : `Took ${tag} off ${images(total.updated)}${without}`;
      report(summary, total);
      await changed({ deleted: [] });
    } catch (e) {
      fail(e);
    }
  }

  async function changeSplit(split) {
    try {
      const total = await inPieces("Moving", (ids) =>
        api(`${projectPath(project)}/images/bulk/split`, {
          method: "POST",
          json: { image_ids: ids, split: split === "none" ? null : split },
        }),
      );
      const where = split === "none" ? "out of any split" : `to the ${split} split`;
      const already = total.unchanged ? `; ${total.unchanged} were there already` : "";
      report(`Moved ${images(total.updated)} ${where}${already}`, total);
      await changed({ deleted: [] });
    } catch (e) {
      fail(e);
    }
  }

  async function deleteSelected() {
    const n = selection.size;
    if (!n) return;
    const named = selection.ids.map((id) => nameOf(id) || `${id.slice(0, 12)}…`);
    const { ok } = await ask({
      title: `Delete ${images(n)}?`,
      message: [
        h(
          "p",
          {},
          `${n === 1 ? "Its" : "Their"} bytes, thumbnail${n === 1 ? "" : "s"} and labels are removed from project ${project}. `,
          "This cannot be undone.",
        ),
        named.length
          ? h(
              "ul",
              {},
              named.slice(0, 5).map((name) => h("li", {}, name)),
            )
          : null,
        named.length > 5 ? h("p", {}, `and ${n - 5} more.`) : null,
        selection.hidden ? h("p", {}, `${selection.hidden} of them are not shown with the current filter.`) : null,
      ],
      confirm: `Delete ${images(n)}`,
      danger: true,
    });
    if (!ok) {
      say("Nothing deleted.");
      return;
    }
    try {
      const total = await inPieces("Deleting", (ids) =>
        api(`${projectPath(project)}/images/bulk/delete`, { method: "POST", json: { image_ids: ids } }),
      );
      const gone = total.results.filter((r) => r.status === "deleted").map((r) => r.id);
      selection.forget(gone);
      report(`Deleted ${images(gone.length)}`, total);
      await changed({ deleted: gone });
    } catch (e) {
      fail(e);
    }
  }

  update();
  return { element, update, deleteSelected };
}
