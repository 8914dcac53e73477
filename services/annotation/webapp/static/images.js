// The image grid: thumbnails, filters, upload by drag and drop (files or folders; a folder's name can tag
// its images), selecting images (checkboxes, Shift ranges, Ctrl/⌘+click, keys) and changing them in bulk,
// asking the model for suggestions.
import { allTags, api, projectPath, thumbnailUrl } from "./api.js";
import { bulkBar } from "./bulk.js";
import { fixedSince, issueImages, issueWords, newestIssueList } from "./labelissues.js";
import { GridSelection, neighbour } from "./selection.js";
import { droppedEntries, pickedFolderFiles, planUpload, uploadBatches, walkEntries } from "./transfers.js";
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

// The newest version's likely label errors, most likely first, as one page; the tag and split filters apply.
async function labelErrorPage(project, filter) {
  const found = await newestIssueList(project);
  if (!found) return { data: [], continuation: null, issues: null };
  const images = (await issueImages(project, found)).filter(
    (image) =>
      (!filter.tag || image.tags.includes(filter.tag)) &&
      (!filter.split || (filter.split === "none" ? !image.split : image.split === filter.split)),
  );
  return { data: images, continuation: null, issues: { version: found.version, ...found.list } };
}

export async function loadPage(project, filter, continuation) {
  if (filter.status === "label-errors") return labelErrorPage(project, filter);
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

// Every id the filter matches, a thousand a call (for "select all matching").
export async function allMatchingIds(project, filter) {
  if (filter.status === "label-errors") return (await labelErrorPage(project, filter)).data.map((i) => i.id);
  const { path, params } = filterQuery(filter);
  const ids = [];
  let continuation = null;
  do {
    const query = new URLSearchParams({ ...params, limit: 1000 });
    if (continuation) query.set("continuation", continuation);
    const page = await api(`${projectPath(project)}/${path}?${query}`);
    ids.push(...page.data.map((i) => i.id));
    continuation = page.continuation;
  } while (continuation);
  return ids;
}

// The upload's choices, kept while the view is shown anew (after an upload created tags).
const uploadChoice = { project: null, tag: "", byFolder: true };

function readFilter() {
  const params = new URLSearchParams(sessionStorage.getItem("visiondock.filter") || "");
  return { status: params.get("status") || "all", tag: params.get("tag") || "", split: params.get("split") || "" };
}

// What the likely-label-errors list is and where it comes from, or why there is none.
function issueSummary(page) {
  const issues = page.issues;
  if (!issues) {
    return [
      "No list of likely label errors yet: a quick training of this project (a classifier) lists the labeled " +
        "images whose label the model, judging images it never saw, finds unlikely.",
    ];
  }
  const threshold = typeof issues.threshold === "number" ? ` below ${Math.round(issues.threshold * 100)} %` : "";
  return [
    `Version ${issues.version} found ${issues.count} likely label error${issues.count === 1 ? "" : "s"} among ` +
      `${issues.checked ?? "?"} labeled images (the given label's out-of-fold probability${threshold}), ` +
      "most likely first. Open one to fix its label; the list is renewed by the next training.",
  ];
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
  const issueNote = h("p", { class: "note", id: "label-issues-note", hidden: true, "aria-live": "polite" });
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
      ["label-errors", "Likely label errors"],
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
    onchange: (e) => {
      upload([...e.target.files].map((file) => ({ file, folder: null, path: file.name })));
      e.target.value = ""; // the same files chosen again are a new choice
    },
  });
  const folderInput = h("input", {
    id: "upload-folder",
    type: "file",
    webkitdirectory: true,
    class: "visually-hidden",
    onchange: (e) => {
      upload(pickedFolderFiles(e.target.files));
      e.target.value = "";
    },
  });
  const detection = info.type === "detection";
  if (uploadChoice.project !== project) Object.assign(uploadChoice, { project, tag: "", byFolder: true });
  const uploadTag = h(
    "select",
    { id: "upload-tag", onchange: (e) => (uploadChoice.tag = e.target.value) },
    h("option", { value: "" }, "no tag"),
    tags.map((t) => h("option", { value: t, selected: t === uploadChoice.tag }, t)),
  );
  const byFolder = h("input", {
    id: "upload-by-folder",
    type: "checkbox",
    checked: uploadChoice.byFolder,
    onchange: (e) => (uploadChoice.byFolder = e.target.checked),
  });
  const uploadProgress = h("progress", { class: "upload-progress", hidden: true, "aria-label": "Upload" });
  const drop = h(
    "section",
    { class: "dropzone", "aria-label": "Upload images" },
    h(
      "p",
      {},
      "Drop images or folders here, or choose ",
      h("label", { for: "upload-files", class: "link" }, "files"),
      " or ",
      h("label", { for: "upload-folder", class: "link" }, "a folder"),
      ".",
    ),
    detection
      ? null
      : h(
          "div",
          { class: "upload-options" },
          h("label", { for: "upload-tag" }, "Tag new images"),
          uploadTag,
          h(
            "span",
            { class: "check" },
            byFolder,
            h("label", { for: "upload-by-folder" }, "each folder's name tags its images"),
          ),
        ),
    fileInput,
    folderInput,
    uploadProgress,
  );
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    // The entries are taken now: the drop's data is gone once this handler returns.
    const { entries, loose } = droppedEntries(e.dataTransfer);
    if (entries.some((entry) => entry.isDirectory)) say("Reading the dropped folders…");
    walkEntries(entries)
      .then((found) => upload([...found, ...loose.map((file) => ({ file, folder: null, path: file.name }))]))
      .catch(fail);
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

  const selection = new GridSelection();
  const names = new Map(); // id -> file name, of the images the grid has shown
  const bulk = bulkBar({
    project,
    type: info.type,
    tags,
    selection,
    allMatching: () => allMatchingIds(project, filter),
    nameOf: (id) => names.get(id),
    changed: async () => {
      refreshStats().catch(fail);
      await showPage(null);
    },
  });

  main.replaceChildren(
    h("div", { class: "heading" }, h("h1", {}, `${project}`, h("span", { class: "type" }, info.type)), stats),
    h("div", { class: "toolbar" }, filters, suggestButton, tagForm),
    drop,
    bulk.element,
    issueNote,
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
    names.set(image.id, image.filename);
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
      ...(image.issues || []).map((item) =>
        h(
          "span",
          { class: "badge issue", dataset: { rank: item.rank } },
          `#${item.rank} ${issueWords(item)}`,
          fixedSince(image, item) ? h("strong", { class: "fixed" }, " · relabeled since") : null,
        ),
      ),
    ];
    const picked = selection.has(image.id);
    return h(
      "li",
      { class: picked ? "picked" : "", dataset: { id: image.id } },
      h("input", {
        type: "checkbox",
        class: "pick",
        checked: picked,
        "aria-label": `Select ${image.filename}`,
      }),
      h(
        "a",
        { href: `#/p/${project}/label/${image.id}`, class: "tile", dataset: { id: image.id } },
        img,
        h("span", { class: "caption" }, caption(image), ...badges),
      ),
    );
  }

  // The tiles show the selection as it is now.
  function showSelection() {
    for (const li of grid.querySelectorAll("li[data-id]")) {
      const picked = selection.has(li.dataset.id);
      li.classList.toggle("picked", picked);
      li.querySelector("input.pick").checked = picked;
    }
    bulk.update();
  }

  const tileOf = (element) => element.closest("li[data-id]");

  grid.addEventListener("click", (event) => {
    const li = tileOf(event.target);
    if (!li) return;
    const id = li.dataset.id;
    if (event.target.matches("input.pick")) {
      // The box has flipped already: its state is what the image (or the Shift range) takes.
      if (event.shiftKey) selection.extendTo(id, event.target.checked);
      else if (selection.has(id) !== event.target.checked) selection.toggle(id);
      showSelection();
    } else if (event.ctrlKey || event.metaKey || event.shiftKey) {
      event.preventDefault(); // selects rather than opening the labeler (or a new tab)
      if (event.shiftKey) selection.extendTo(id);
      else selection.toggle(id);
      showSelection();
    }
  });

  grid.addEventListener("keydown", (event) => {
    const li = tileOf(event.target);
    if (!li) return;
    const id = li.dataset.id;
    const tiles = [...grid.querySelectorAll("li[data-id]")];
    const key = event.key;
    if (key.startsWith("Arrow") || key === "Home" || key === "End") {
      const top = tiles[0].offsetTop;
      const columns = Math.max(1, tiles.filter((t) => t.offsetTop === top).length);
      const next = tiles[neighbour(tiles.indexOf(li), key, columns, tiles.length)];
      event.preventDefault();
      if (event.shiftKey) {
        if (!selection.has(id)) selection.toggle(id);
        selection.extendTo(next.dataset.id, true);
        showSelection();
      }
      // The same control of the next tile: its checkbox from a checkbox, its link from a link.
      next.querySelector(event.target.matches("input.pick") ? "input.pick" : "a.tile").focus();
    } else if (key === " " && event.target.matches("a.tile")) {
      event.preventDefault();
      if (event.shiftKey) selection.extendTo(id);
      else selection.toggle(id);
      showSelection();
    } else if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "a") {
      event.preventDefault();
      selection.selectAll();
      showSelection();
      say(`Selected the ${selection.order.length} images of this page.`);
    } else if (key === "Escape" && selection.size) {
      selection.clear();
      showSelection();
    } else if (key === "Delete") {
      event.preventDefault();
      bulk.deleteSelected();
    }
  });

  async function showPage(continuation) {
    const page = await loadPage(project, filter, continuation);
    if (!continuation) {
      Object.assign(browsing, { project, filter: { ...filter }, ids: [], continuation: null, done: false });
      grid.replaceChildren();
    }
    browsing.ids.push(...page.data.map((i) => i.id));
    browsing.continuation = page.continuation;
    browsing.done = !page.continuation;
    selection.show(browsing.ids);
    bulk.update();
    const cards = page.data.map(card);
    grid.append(...cards);
    if (!continuation) issueNote.replaceChildren(...issueSummary(page));
    issueNote.hidden = filter.status !== "label-errors";
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

  // Uploads `files` ([{file, folder, path}]) with the tags each gets (planUpload): folder tags the project
  // lacks are created first, then each set of tags goes up in requests of 32 files (64 MB) at most, with a
  // progress bar.
  async function upload(files) {
    if (!files.length) return;
    const plan = planUpload(files, {
      type: info.type,
      chosen: detection ? "" : uploadTag.value,
      byFolder: byFolder.checked,
      knownTags: tags,
    });
    const total = plan.groups.reduce((n, g) => n + g.files.length, 0);
    let created = 0,
      duplicates = 0,
      done = 0;
    const rejected = [];
    const tagged = new Map();
    try {
      for (const name of plan.newTags) {
        await api(`${projectPath(project)}/tags`, { method: "POST", json: { name } });
      }
    } catch (e) {
      say(`No image uploaded: the tag for a folder could not be created (${e.message}).`, "error");
      return;
    }
    uploadProgress.hidden = false;
    uploadProgress.max = total;
    uploadProgress.value = 0;
    for (const group of plan.groups) {
      for (const batch of uploadBatches(group.files)) {
        const body = new FormData();
        for (const f of batch) body.append("files", f, f.name);
        if (group.tags.length) body.append("tags", group.tags.join(","));
        say(`Uploading ${done + batch.length} of ${total}…`);
        try {
          const result = await api(`${projectPath(project)}/images`, { method: "POST", body });
          created += result.created;
          duplicates += result.duplicates;
          rejected.push(
            ...result.results.filter((r) => r.status === "rejected").map((r) => `${r.filename}: ${r.error}`),
          );
          if (group.tags.length && result.created) {
            const key = group.tags.join(" + ");
            tagged.set(key, (tagged.get(key) || 0) + result.created);
          }
        } catch (e) {
          rejected.push(e.message);
        }
        done += batch.length;
        uploadProgress.value = done;
      }
    }
    uploadProgress.hidden = true;
    const parts = [`Uploaded ${created} new, ${duplicates} already there${duplicates ? " (their labels kept)" : ""}`];
    if (tagged.size) parts.push(`tagged ${[...tagged].map(([t, n]) => `${t}: ${n}`).join(", ")}`);
    if (plan.newTags.length)
      parts.push(`created tag${plan.newTags.length === 1 ? "" : "s"} ${plan.newTags.join(", ")}`);
    parts.push(...plan.notes);
    if (rejected.length) parts.push(`refused: ${rejected.join("; ")}`);
    say(`${parts.join("; ")}.`, rejected.length ? "error" : "info");
    if (plan.newTags.length) {
      // The new tags join the filters, the upload's and the bulk bar's choices.
      await imagesView(main, project);
      return;
    }
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

  // Outside the grid too (but not in a field or a dialog): Ctrl/⌘+A selects the page, Escape clears.
  stopPageKeys();
  pageKeys = (event) => {
    if (event.target.closest("input, select, textarea, dialog, .grid")) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "a") {
      event.preventDefault();
      selection.selectAll();
      showSelection();
      say(`Selected the ${selection.order.length} images of this page.`);
    } else if (event.key === "Escape" && selection.size) {
      selection.clear();
      showSelection();
    }
  };
  document.addEventListener("keydown", pageKeys);
  return stopPageKeys;
}

// The page-wide keys of the grid shown now (one grid at a time: shown anew, it replaces the last one's).
let pageKeys = null;

function stopPageKeys() {
  if (pageKeys) document.removeEventListener("keydown", pageKeys);
  pageKeys = null;
}
