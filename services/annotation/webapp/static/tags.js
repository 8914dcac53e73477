// A project's tags with how many images carry each: add, rename (into an existing tag: a merge, asked
// first) and delete (asked first, saying what happens to the images that carry it).
import { allTags, api, projectPath } from "./api.js";
import { ask } from "./dialog.js";
import { fail, h, say } from "./ui.js";

const images = (n) => `${n} image${n === 1 ? "" : "s"}`;

// What deleting a tag does to the images carrying it, by project type.
const DELETE_EFFECT = {
  multiclass: "they become unlabeled",
  multilabel: "it is taken off them",
  detection: "their boxes of this tag are removed",
};

export async function tagsView(main, project) {
  const info = await api(projectPath(project));
  const rows = h("tbody");
  const summary = h("p", { class: "stats", "aria-live": "polite" });
  const newTag = h("input", { id: "tags-new", placeholder: "new tag", required: true });
  let busy = false;

  main.replaceChildren(
    h("div", { class: "heading" }, h("h1", {}, `Tags of ${project}`, h("span", { class: "type" }, info.type)), summary),
    h(
      "table",
      { class: "tag-table" },
      h("caption", {}, "Tags, in the order of their number keys"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Key"),
          h("th", { scope: "col" }, "Tag"),
          h("th", { scope: "col", class: "number" }, "Images"),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
        ),
      ),
      rows,
    ),
    h(
      "form",
      { class: "card inline", onsubmit: addTag },
      h("label", { for: "tags-new" }, "New tag"),
      newTag,
      h("button", { type: "submit" }, "Add tag"),
    ),
  );

  async function render() {
    const [tags, stats] = await Promise.all([allTags(project), api(`${projectPath(project)}/stats`)]);
    const counts = stats.tag_counts;
    summary.textContent = `${tags.length} tag${tags.length === 1 ? "" : "s"}; ${stats.labeled_count} of ${images(stats.image_count)} labeled.`;
    rows.replaceChildren(
      ...tags.map((tag, i) => {
        const count = counts[tag] ?? 0;
        return h(
          "tr",
          { dataset: { tag } },
          h("td", {}, i < 9 ? h("kbd", {}, String(i + 1)) : ""),
          h("th", { scope: "row" }, tag),
          h("td", { class: "number" }, String(count)),
          h(
            "td",
            { class: "actions" },
            h(
              "button",
              { type: "button", "aria-label": `Rename ${tag}`, onclick: () => rename(tag, tags, counts) },
              "Rename…",
            ),
            h(
              "button",
              {
                type: "button",
                class: "quiet-danger",
                "aria-label": `Delete ${tag}`,
                onclick: () => remove(tag, count),
              },
              "Delete…",
            ),
          ),
        );
      }),
    );
    if (!tags.length) rows.append(h("tr", {}, h("td", { colspan: 4 }, "No tags yet: add one below.")));
  }

  async function addTag(event) {
    event.preventDefault();
    const name = newTag.value.trim();
    try {
      await api(`${projectPath(project)}/tags`, { method: "POST", json: { name } });
      newTag.value = "";
      say(`Tag ${name} added.`);
      await render();
    } catch (e) {
      fail(e);
    }
  }

  async function change(doing, call) {
    if (busy) return;
    busy = true;
    say(doing);
    try {
      return await call();
    } finally {
      busy = false;
    }
  }

  async function rename(tag, tags, counts) {
    const count = counts[tag] ?? 0;
    const named = await ask({
      title: `Rename ${tag}`,
      message: `${images(count)} carry it; each is relabeled with the new name. Naming an existing tag merges the two.`,
      field: { label: "New name", value: tag },
      confirm: "Rename",
    });
    if (!named.ok || !named.value || named.value === tag) {
      say("Nothing renamed.");
      return;
    }
    const name = named.value;
    const merge = tags.includes(name);
    if (merge) {
      const merged = await ask({
        title: `Merge ${tag} into ${name}?`,
        message:
          `${name} already exists (on ${images(counts[name] ?? 0)}). The ${images(count)} of ${tag} get ${name} ` +
          `instead and ${tag} is deleted${info.type === "multiclass" ? "" : "; an image with both keeps one"}. ` +
          "This cannot be undone.",
        confirm: `Merge into ${name}`,
        danger: true,
      });
      if (!merged.ok) {
        say("Nothing merged.");
        return;
      }
    }
    try {
      const answer = await change(merge ? `Merging ${tag} into ${name}…` : `Renaming ${tag}…`, () =>
        api(`${projectPath(project)}/tags/${encodeURIComponent(tag)}/rename`, {
          method: "POST",
          json: { name, merge },
        }),
      );
      say(
        merge
          ? `Merged ${tag} into ${name}: ${images(answer.images_changed)} changed; ${name} is on ${images(answer.image_count)} now.`
          : `Renamed ${tag} to ${name} on ${images(answer.images_changed)}.`,
      );
      await render();
    } catch (e) {
      fail(e);
    }
  }

  async function remove(tag, count) {
    const { ok } = await ask({
      title: `Delete tag ${tag}?`,
      message: count
        ? `It is on ${images(count)}: ${DELETE_EFFECT[info.type]}. This cannot be undone.`
        : "No image carries it.",
      confirm: "Delete tag",
      danger: true,
    });
    if (!ok) {
      say("Nothing deleted.");
      return;
    }
    try {
      const answer = await change(`Deleting ${tag}…`, () =>
        api(`${projectPath(project)}/tags/${encodeURIComponent(tag)}`, { method: "DELETE", params: { confirm: true } }),
      );
      say(`Deleted tag ${tag}; ${images(answer.images_changed)} changed.`);
      await render();
    } catch (e) {
      fail(e);
    }
  }

  await render();
}
