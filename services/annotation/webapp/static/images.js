// The image grid: thumbnails, filters, drag-and-drop upload, asking the model for suggestions.
import { allTags, api, projectPath, thumbnailUrl } from "./api.js";
import { fail, h, say } from "./ui.js";

const PAGE = 60;

// The grid's images in order, shared with the labeler so arrows move through what the grid shows.
export const browsing = { project: null, filter: null, ids: [], continuation: null, done: true };

export function filterQuery(filter) {
  if (filter.status === "review") return { path: "suggestions", params: {} };
  const params = {};
  if (filter.status === "unlabeled") params.labeled = "false";
  if (filter.status === "labeled") params.labeled = "true";
  if (filter.tag) params.tag = filter.tag;
  if (filter.split) params.split = filter.split;
  return { path: "images", params };
}

export async function loadPage(project, filter, continuation) {
  const { path, params } = filterQuery(filter);
  const query = new URLSearchParams({ ...params, limit: PAGE });
  if (continuation) query.set("continuation", continuation);
  return api(`${projectPath(project)}/${path}?${query}`);
}

// More of the grid's list, for the labeler reaching its end.
export async function loadMore() {
  if (browsing.done) return [];
  const page = await loadPage(browsing.project, browsing.filter, browsing.continuation);
  browsing.ids.push(...page.data.map((i) => i.id));
  browsing.continuation = page.continuation;
  browsing.done = !page.continuation;
  return page.data;
}

function readFilter() {
  const params = new URLSearchParams(sessionStorage.getItem("visiondock.filter") || "");
  return { status: params.get("status") || "all", tag: params.get("tag") || "", split: params.get("split") || "" };
}

function caption(image) {
  if (image.regions.length) return `${image.regions.length} box${image.regions.length === 1 ? "" : "es"}`;
  if (image.tags.length) return image.tags.join(", ");
  return image.labeled ? "none" : "unlabeled";
}

export async function imagesView(main, project) {
  const [info, tags] = await Promise.all([api(projectPath(project)), allTags(project)]);
  const filter = readFilter();
  const stats = h("p", { class: "stats", "aria-live": "polite" });
  const grid = h("ul", { class: "grid", "aria-label": "Images" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const select = (id, label, value, options) => [
    h("label", { for: id }, label),
    h(
      "select",
      {
        id,
        onchange: (e) => {
          filter[id.replace("filter-", "")] = e.target.value;
          saveAndReload();
        },
      },
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
    ),
  ];
  const filters = h(
    "form",
    { class: "filters", "aria-label": "Filters", onsubmit: (e) => e.preventDefault() },
    select("filter-status", "Show", filter.status, [
      ["all", "All images"],
      ["unlabeled", "Unlabeled"],
      ["labeled", "Labeled"],
      ["review", "Awaiting review (suggested)"],
    ]),
    select("filter-tag", "Tag", filter.tag, [["", "Any tag"], ...tags.map((t) => [t, t])]),
    select("filter-split", "Split", filter.split, [
      ["", "Any split"],
      ["train", "train"],
      ["test", "test"],
      ["none", "none"],
    ]),
  );

  const fileInput = h("input", {
    id: "upload-files",
    type: "file",
    multiple: true,
    accept: "image/*",
    class: "visually-hidden",
    onchange: (e) => upload([...e.target.files]),
  });
  const drop = h(
    "section",
    { class: "dropzone", "aria-label": "Upload images" },
    h("p", {}, "Drop images here, or ", h("label", { for: "upload-files", class: "link" }, "choose files"), "."),
    fileInput,
  );
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    upload([...e.dataTransfer.files]);
  });

  // The project's own model (named like the project, as training registers it) suggests.
  const suggestButton = h(
    "button",
    { type: "button", onclick: suggest, title: `Asks model ${project} on the scoring service` },
    "Suggest labels for unlabeled images",
  );
  const newTag = h("input", { id: "new-tag", placeholder: "new tag", "aria-label": "New tag name" });
  const tagForm = h(
    "form",
    {
      class: "inline",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await api(`${projectPath(project)}/tags`, { method: "POST", json: { name: newTag.value.trim() } });
          say(`Tag ${newTag.value} added.`);
          imagesView(main, project);
        } catch (err) {
          fail(err);
        }
      },
    },
    newTag,
    h("button", { type: "submit" }, "Add tag"),
  );

  main.replaceChildren(
    h("div", { class: "heading" }, h("h1", {}, `${project}`, h("span", { class: "type" }, info.type)), stats),
    h("div", { class: "toolbar" }, filters, suggestButton, tagForm),
    drop,
    grid,
    more,
  );

  async function refreshStats() {
    const s = await api(`${projectPath(project)}/stats`);
    stats.textContent =
      `${s.image_count} images, ${s.labeled_count} labeled · ` +
      Object.entries(s.tag_counts)
        .map(([t, n]) => `${t}: ${n}`)
        .join(" · ");
  }

  function card(image) {
    const img = h("img", { alt: image.filename, width: 160, height: 160 });
    thumbnailUrl(project, image.id)
      .then((url) => {
        img.src = url;
      })
      .catch(() => img.classList.add("broken"));
    const s = image.suggestion;
    const proposed = s && (s.regions.length ? `${s.regions.length} box(es)` : s.tags.join(", ") || "nothing");
    const badges = [
      s ? h("span", { class: "badge suggested" }, `suggested: ${proposed}`) : null,
      image.split ? h("span", { class: "badge" }, image.split) : null,
    ];
    return h(
      "li",
      {},
      h(
        "a",
        { href: `#/p/${project}/label/${image.id}`, class: "tile", dataset: { id: image.id } },
        img,
        h("span", { class: "caption" }, caption(image), ...badges),
      ),
    );
  }

  async function showPage(continuation) {
    const page = await loadPage(project, filter, continuation);
    if (!continuation) {
      Object.assign(browsing, { project, filter: { ...filter }, ids: [], continuation: null, done: false });
      grid.replaceChildren();
    }
    browsing.ids.push(...page.data.map((i) => i.id));
    browsing.continuation = page.continuation;
    browsing.done = !page.continuation;
    const cards = page.data.map(card);
    grid.append(...cards);
    if (!continuation && !page.data.length) grid.append(h("li", { class: "empty" }, "No images match."));
    more.hidden = !page.continuation;
    return Promise.all(
      cards.map(
        (c) =>
          new Promise((resolve) => {
            const img = c.querySelector("img");
            if (img.complete && img.src) resolve();
            img.addEventListener("load", resolve, { once: true });
            img.addEventListener("error", resolve, { once: true });
            setTimeout(resolve, 10000);
          }),
      ),
    );
  }

  function saveAndReload() {
    sessionStorage.setItem("visiondock.filter", new URLSearchParams(filter).toString());
    showPage(null).catch(fail);
  }

  async function upload(files) {
    if (!files.length) return;
    let created = 0,
      duplicates = 0,
      rejected = [];
    for (let i = 0; i < files.length; i += 32) {
      const body = new FormData();
      for (const f of files.slice(i, i + 32)) body.append("files", f, f.name);
      say(`Uploading ${Math.min(i + 32, files.length)} of ${files.length}…`);
      try {
        const result = await api(`${projectPath(project)}/images`, { method: "POST", body });
        created += result.created;
        duplicates += result.duplicates;
        rejected.push(...result.results.filter((r) => r.status === "rejected").map((r) => `${r.filename}: ${r.error}`));
      } catch (e) {
        rejected.push(e.message);
      }
    }
    say(
      `Uploaded ${created} new, ${duplicates} already there${rejected.length ? `; refused: ${rejected.join("; ")}` : ""}.`,
      rejected.length ? "error" : "info",
    );
    refreshStats().catch(fail);
    showPage(null).catch(fail);
  }

  async function suggest() {
    suggestButton.disabled = true;
    say("Asking the model…");
    try {
      const result = await api(`${projectPath(project)}/suggest`, { method: "POST", json: { limit: 200 } });
      say(
        `${result.suggested} suggestion(s) from ${result.model} version ${result.version ?? "?"}` +
          (result.empty ? `; ${result.empty} found nothing (accepting those needs a confirmation)` : "") +
          (result.failed.length ? `; ${result.failed.length} image(s) failed` : "") +
          '. Show "Awaiting review" to go through them.',
      );
      showPage(null).catch(fail);
    } catch (e) {
      fail(e);
    } finally {
      suggestButton.disabled = false;
    }
  }

  more.addEventListener("click", () => showPage(browsing.continuation).catch(fail));
  await showPage(null);
  performance.mark("grid-painted");
  window.gridPainted = true;
  // Counting walks every image of the project: after the thumbnails, not competing with them.
  refreshStats().catch(fail);
}
