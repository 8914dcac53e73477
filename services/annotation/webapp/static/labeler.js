// One image at a time: tags by number keys (classification) or boxes by pointer (detection), the
// model's suggestion shown dashed (A accepts it), arrows move through the grid's list, U undoes. The
// photo zooms (wheel, + and -, 0 fits) and pans (Shift+arrows, Shift+wheel, the middle button); boxes
// are drawn in draw mode (D: a drag always draws) and moved or resized in edit mode (E).
import { allTags, api, contentUrl, projectPath } from "./api.js";
import { BoxEditor, colourOf, loadStyle } from "./boxes.js";
import { ask } from "./dialog.js";
import { browsing, loadMore } from "./images.js";
import { isEmptySuggestion, LabelerStore } from "./store.js";
import { fail, h, percent, say } from "./ui.js";

export async function labelerView(main, project, imageId) {
  const [info, tags] = await Promise.all([api(projectPath(project)), allTags(project)]);
  await loadStyle(tags);
  const detection = info.type === "detection";
  if (browsing.project !== project)
    Object.assign(browsing, { project, filter: { status: "all" }, ids: [], continuation: null, done: false });
  let image = null;
  let editor = null;
  // Which label new boxes get and which box a key relabels (only one a person picked, never one just
  // drawn: "key, draw, key, draw" gives each box the key pressed before it), and the undo history.
  const store = new LabelerStore({ tags, type: info.type });
  const undoStack = store.undo;

  const title = h("h1", { class: "visually-hidden" }, "Label image");
  const position = h("span", { class: "position" });
  const filename = h("span", { class: "filename" });
  const state = h("p", { class: "labels", "aria-live": "polite" });
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "overlay");
  svg.setAttribute("role", "img");
  const stage = h("div", { class: "stage" }, svg);
  const zoomShown = h("output", { class: "zoom", "aria-label": "Zoom" }, "100 %");
  const modeButton = (mode, key, text) =>
    h(
      "button",
      { type: "button", class: "mode", dataset: { mode }, onclick: () => setMode(mode) },
      h("kbd", {}, key),
      text,
    );
  const tools = h(
    "div",
    { class: "stage-tools", role: "group", "aria-label": "Drawing and view" },
    detection ? [modeButton("draw", "D", " Draw"), modeButton("edit", "E", " Move / resize")] : null,
    h("button", { type: "button", "aria-label": "Zoom out (-)", onclick: () => editor.zoomBy(1 / 1.5) }, "−"),
    zoomShown,
    h("button", { type: "button", "aria-label": "Zoom in (+)", onclick: () => editor.zoomBy(1.5) }, "+"),
    h("button", { type: "button", onclick: () => editor.fitView() }, h("kbd", {}, "0"), " Fit"),
  );
  let mode = "draw";
  const tagButtons = h("div", {
    class: "tag-buttons",
    role: "group",
    "aria-label": detection ? "Label for new boxes" : "Tags",
  });
  const suggestionPanel = h("section", { class: "suggestion", "aria-label": "Suggestion", hidden: true });
  const boxList = h("ul", { class: "box-list", "aria-label": "Boxes" });
  const relabelHint = h("p", { class: "relabel-hint", "aria-live": "polite" });
  const historyList = h("ol", { class: "history", tabindex: "0", "aria-label": "Label history" });
  const help = h(
    "p",
    { class: "help" },
    detection
      ? "Number keys choose the label of the next box you draw. Draw mode (D): a drag always draws a new box, even inside another one; a click picks the box under it, and then a number key relabels it, Delete removes it. Edit mode (E): drag a box to move it, its corners to resize. Wheel or + − zoom at the pointer, 0 fits; Shift+arrows, Shift+wheel or the middle button pan. A accepts the suggestion, U undoes, ← → move, Esc goes back."
      : `Number keys ${info.type === "multiclass" ? "set the tag and go to the next image" : "toggle tags; Enter goes to the next image"}; A accepts the suggestion, U undoes, ← → move, Esc goes back. Wheel or + − zoom, 0 fits, Shift+arrows pan.`,
  );

  main.replaceChildren(
    title,
    h(
      "div",
      { class: "labeler-bar" },
      h("a", { href: `#/p/${project}/images` }, "← Images"),
      position,
      filename,
      h("button", { type: "button", class: "delete-image", onclick: () => deleteImage() }, "Delete image…"),
    ),
    h(
      "div",
      { class: "labeler" },
      h("div", { class: "stage-column" }, tools, stage),
      h(
        "aside",
        { class: "side" },
        state,
        h("h2", {}, detection ? "Label for new boxes" : "Tags"),
        tagButtons,
        suggestionPanel,
        detection ? [h("h2", {}, "Boxes"), relabelHint, boxList] : null,
        help,
        h("h2", {}, "History"),
        historyList,
      ),
    ),
  );

  function renderTags() {
    tagButtons.replaceChildren(
      ...tags.map((tag, i) => {
        const on = detection ? tag === store.newBoxTag : image?.tags.includes(tag);
        return h(
          "button",
          {
            type: "button",
            class: on ? "tag on" : "tag",
            "aria-pressed": on ? "true" : "false",
            style: `--tag: ${colourOf(tag)}`,
            onclick: () => press(i),
          },
          h("kbd", {}, i < 9 ? String(i + 1) : ""),
          ` ${tag}`,
        );
      }),
    );
  }

  function renderState() {
    const labels = detection ? `${image.regions.length} box(es)` : image.tags.join(", ") || "none";
    state.textContent = image.labeled ? `Labeled: ${labels}` : "Not labeled yet";
    const at = browsing.ids.indexOf(image.id);
    position.textContent = at >= 0 ? `${at + 1} of ${browsing.ids.length}${browsing.done ? "" : "+"}` : "";
    filename.textContent = image.filename;
    const s = image.suggestion;
    suggestionPanel.hidden = !s;
    if (s) {
      const what = isEmptySuggestion(s)
        ? detection
          ? "nothing found (no box)"
          : "no tag of this project"
        : detection
          ? `${s.regions.length} box(es), shown dashed`
          : (s.tags.join(", ") || "no tag of this project") +
            (s.scores.length ? ` (${percent(s.scores[0].probability)})` : "");
      suggestionPanel.replaceChildren(
        h("h2", {}, "Suggestion"),
        h("p", {}, `${s.model} v${s.version}: ${what}`),
        h(
          "button",
          { type: "button", class: "primary", onclick: () => acceptSuggestion() },
          h("kbd", {}, "A"),
          " Accept",
        ),
        h("button", { type: "button", onclick: dismissSuggestion }, "Dismiss"),
      );
    }
    if (detection) {
      const target = image.regions[store.relabelBox];
      relabelHint.textContent = target
        ? `Box ${store.relabelBox + 1} (${target.tag}) is selected: a number key relabels it.`
        : "Click a box, then a number key, to relabel it.";
      boxList.replaceChildren(
        ...image.regions.map((r, i) =>
          h(
            "li",
            { class: i === store.selectedBox ? "selected" : "" },
            h(
              "button",
              { type: "button", onclick: () => editor.select(i) },
              `${r.tag} at ${Math.round(r.left * 100)}%, ${Math.round(r.top * 100)}%`,
            ),
            h(
              "button",
              {
                type: "button",
                "aria-label": `Delete box ${i + 1} (${r.tag})`,
                onclick: () => {
                  editor.select(i);
                  editor.removeSelected();
                },
              },
              "✕",
            ),
          ),
        ),
      );
    }
    svg.setAttribute("aria-label", detection ? `${image.filename}: ${image.regions.length} boxes` : image.filename);
    renderTags();
  }

  async function renderHistory() {
    const entries = (await api(`${projectPath(project)}/images/${image.id}/history?limit=20`)).data;
    const describe = (l) => (!l ? "—" : detection ? `${l.regions.length} box(es)` : l.tags.join(", ") || "none");
    historyList.replaceChildren(
      ...entries.map((e) =>
        h(
          "li",
          {},
          `${new Date(e.at).toLocaleString()} · ${e.who} (${e.source}): ${describe(e.previous)} → ${describe(e.labels)}`,
        ),
      ),
    );
    if (!entries.length) historyList.append(h("li", {}, "No label changes yet."));
  }

  async function show(id) {
    await regionSaves; // the boxes drawn on this image are stored before the next one is shown
    image = await api(`${projectPath(project)}/images/${id}`);
    history.replaceState(null, "", `#/p/${project}/label/${id}`);
    const url = await contentUrl(project, id);
    // The stage takes the image's shape, so the overlay's pixels are the image's (no letterbox).
    stage.style.aspectRatio = `${image.width} / ${image.height}`;
    stage.style.maxWidth = `min(100%, calc(78vh * ${image.width / image.height}))`;
    store.imageShown();
    // One editor per image: the last one's events end with it (its boxes are another image's).
    if (editor) editor.destroy();
    editor = new BoxEditor(svg, {
      width: image.width,
      height: image.height,
      editable: detection,
      onView: (zoom) => {
        zoomShown.textContent = `${Math.round(zoom * 100)} %`;
      },
      label: () => store.newBoxTag,
      onChange: (regions) => saveRegions(regions),
      onSelect: (i, picked) => {
        if (i < 0) store.unselected();
        else if (picked) store.boxPicked(i);
        else store.boxDrawn(i);
        renderState();
      },
    });
    if (detection) {
      editor.setMode(mode);
      editor.setRegions(image.regions, image.suggestion ? image.suggestion.regions : []);
    }
    editor.showPhoto(url);
    renderState();
    renderHistory().catch(fail);
  }

  async function save(path, body, previous) {
    const updated = await api(`${projectPath(project)}/images/${image.id}/${path}`, {
      method: "PUT",
      json: body,
      headers: { "If-Match": image.etag },
    });
    undoStack.push({ id: image.id, path, body: previous });
    image = updated;
    renderState();
    renderHistory().catch(fail);
    return updated;
  }

  // Box edits are saved one after another: each PUT carries the etag the previous one returned, so a box
  // drawn while a save is on its way is saved after it rather than refused as a conflict.
  let regionSaves = Promise.resolve();
  let regionSavesWaiting = 0;
  function saveRegions(regions) {
    regionSavesWaiting += 1;
    regionSaves = regionSaves.then(async () => {
      let suggested = [];
      try {
        await save(
          "regions",
          { regions },
          { regions: image.regions.map(({ tag, left, top, width, height }) => ({ tag, left, top, width, height })) },
        );
        say(`Saved ${image.regions.length} box(es).`);
      } catch (e) {
        fail(e);
        suggested = image.suggestion ? image.suggestion.regions : [];
      } finally {
        regionSavesWaiting -= 1;
      }
      // The stored boxes are shown unless a newer edit waits to be saved: it holds the boxes to show.
      if (editor && regionSavesWaiting === 0) editor.setRegions(image.regions, suggested);
    });
    return regionSaves;
  }

  async function press(index) {
    const action = store.press(index, image ? image.tags : []);
    if (!action) return;
    if (action.kind === "relabel") {
      if (editor) editor.relabel(action.box, action.tag);
      renderState();
      say(`Box relabelled: ${action.tag}. The next key chooses the label of new boxes again.`);
      return;
    }
    if (action.kind === "next-box") {
      renderState();
      say(`New boxes: ${action.tag}`);
      return;
    }
    try {
      await save("tags", { tags: action.tags }, { tags: image.tags });
      if (action.kind === "set") {
        say(`${image.filename}: ${action.tags[0]}`);
        await step(1);
      }
    } catch (e) {
      fail(e);
    }
  }

  function askToAcceptEmpty() {
    const what = detection ? "no box" : "no tag of this project";
    const cancel = h(
      "button",
      {
        type: "button",
        onclick: () => {
          renderState();
          say("Not accepted.");
        },
      },
      "Cancel",
    );
    suggestionPanel.replaceChildren(
      h("h2", {}, "Suggestion"),
      h(
        "p",
        { class: "warning", role: "alert" },
        `The model found ${what} in this image. Accepting labels it as showing ` +
          "nothing of this project. Draw or pick the labels yourself if something is there.",
      ),
      h(
        "button",
        { type: "button", class: "danger", onclick: () => acceptSuggestion({ empty: true }) },
        "Label as showing nothing",
      ),
      cancel,
    );
    cancel.focus();
    say(`The suggestion has ${what}: confirm to label the image as showing nothing, or label it yourself.`, "error");
  }

  async function acceptSuggestion({ empty = false } = {}) {
    await regionSaves; // its If-Match must carry the etag of the last box edit
    if (!image.suggestion) {
      say("This image has no suggestion.");
      return;
    }
    // A suggestion that proposes nothing is never taken by a key press: the person confirms "nothing here".
    if (!empty && !store.acceptsAtOnce(image.suggestion)) {
      askToAcceptEmpty();
      return;
    }
    try {
      const previous = detection ? { regions: image.regions } : { tags: image.tags };
      const query = empty ? "?empty=true" : "";
      image = await api(`${projectPath(project)}/images/${image.id}/suggestion/accept${query}`, {
        method: "POST",
        headers: { "If-Match": image.etag },
      });
      undoStack.push({ id: image.id, path: detection ? "regions" : "tags", body: previous });
      say(`Suggestion accepted for ${image.filename}.`);
      if (detection) {
        editor.setRegions(image.regions, []);
        renderState();
        renderHistory().catch(fail);
      } else await step(1);
    } catch (e) {
      fail(e);
    }
  }

  async function dismissSuggestion() {
    try {
      image = await api(`${projectPath(project)}/images/${image.id}/suggestion`, { method: "DELETE" });
      if (editor) editor.setRegions(image.regions, []);
      renderState();
    } catch (e) {
      fail(e);
    }
  }

  async function undo() {
    await regionSaves; // the last box edit is on the undo stack once it is saved
    const last = undoStack.pop();
    if (!last) {
      say("Nothing to undo.");
      return;
    }
    try {
      if (last.id !== image.id) await show(last.id);
      image = await api(`${projectPath(project)}/images/${last.id}/${last.path}`, { method: "PUT", json: last.body });
      if (editor) editor.setRegions(image.regions, image.suggestion ? image.suggestion.regions : []);
      renderState();
      renderHistory().catch(fail);
      say("Undone.");
    } catch (e) {
      fail(e);
    }
  }

  // After a confirmation: the image goes (bytes, thumbnail, labels); the next one of the list is shown.
  async function deleteImage() {
    await regionSaves;
    const gone = image;
    const { ok } = await ask({
      title: `Delete ${gone.filename}?`,
      message: `Its bytes, thumbnail and labels are removed from project ${project}. This cannot be undone.`,
      confirm: "Delete image",
      danger: true,
    });
    if (!ok) {
      say("Nothing deleted.");
      return;
    }
    try {
      await api(`${projectPath(project)}/images/${gone.id}`, { method: "DELETE", headers: { "If-Match": gone.etag } });
    } catch (e) {
      fail(e);
      return;
    }
    const at = browsing.ids.indexOf(gone.id);
    if (at >= 0) browsing.ids.splice(at, 1);
    undoStack.entries = undoStack.entries.filter((entry) => entry.id !== gone.id);
    say(`Deleted ${gone.filename}.`);
    const next = browsing.ids[Math.max(0, at)] ?? (!browsing.done ? (await loadMore())[0]?.id : undefined);
    if (next) await show(next);
    else location.hash = `#/p/${project}/images`;
  }

  function setMode(next) {
    mode = next;
    if (editor) editor.setMode(mode);
    for (const button of tools.querySelectorAll("button.mode"))
      button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
    say(
      mode === "draw" ? "Draw mode: a drag draws a new box." : "Edit mode: drag a box to move it, a corner to resize.",
    );
  }

  async function step(delta) {
    let at = browsing.ids.indexOf(image.id);
    // Opened by its link: find it in the grid's list (a few pages at most) before stepping from it.
    for (let pages = 0; at < 0 && !browsing.done && pages < 5; pages++) {
      await loadMore();
      at = browsing.ids.indexOf(image.id);
    }
    if (at < 0) {
      browsing.ids.unshift(image.id);
      at = 0;
    }
    if (at + delta >= browsing.ids.length && !browsing.done) await loadMore();
    const next = browsing.ids[at + delta];
    if (next) await show(next);
    else say(delta > 0 ? "That was the last image." : "This is the first image.");
  }

  async function onKey(event) {
    if (event.target.closest("input, select, textarea, dialog") || event.altKey || event.metaKey) return;
    const key = event.key;
    if ((event.ctrlKey && key.toLowerCase() === "z") || (!event.ctrlKey && key.toLowerCase() === "u")) {
      event.preventDefault();
      await undo();
      return;
    }
    if (event.ctrlKey) return;
    if (event.shiftKey && key.startsWith("Arrow") && editor) {
      event.preventDefault();
      const [dx, dy] = { ArrowLeft: [-0.25, 0], ArrowRight: [0.25, 0], ArrowUp: [0, -0.25], ArrowDown: [0, 0.25] }[key];
      editor.panBy(dx, dy);
    } else if ((key === "+" || key === "=") && editor) editor.zoomBy(1.5);
    else if (key === "-" && editor) editor.zoomBy(1 / 1.5);
    else if (key === "0" && editor) editor.fitView();
    else if (detection && key.toLowerCase() === "d") setMode("draw");
    else if (detection && key.toLowerCase() === "e") setMode("edit");
    else if (/^[1-9]$/.test(key)) {
      event.preventDefault();
      await press(Number(key) - 1);
    } else if (key === "ArrowRight" || (key === "Enter" && !event.target.closest("button, a"))) {
      event.preventDefault();
      await step(1);
    } else if (key === "ArrowLeft") {
      event.preventDefault();
      await step(-1);
    } else if (key.toLowerCase() === "a") {
      event.preventDefault();
      await acceptSuggestion();
    } else if ((key === "Delete" || key === "Backspace") && editor) {
      event.preventDefault();
      editor.removeSelected();
    } else if (key === "Escape") {
      if (editor && editor.selected >= 0) editor.select(-1);
      else location.hash = `#/p/${project}/images`;
    }
  }

  let busy = Promise.resolve();
  const queued = (event) => {
    // Decided now: the handler itself runs after the previous key's save.
    if (
      !event.target.closest("input, select, textarea, dialog") &&
      (/^([0-9]|Arrow(Left|Right)|[aAuUdDeE+=-]|Delete|Backspace)$/.test(event.key) ||
        (event.shiftKey && event.key.startsWith("Arrow")))
    ) {
      event.preventDefault();
    }
    busy = busy.then(() => onKey(event)).catch(fail);
  };
  document.addEventListener("keydown", queued);
  await show(imageId);
  if (detection) setMode("draw");
  return () => {
    document.removeEventListener("keydown", queued);
    if (editor) editor.destroy();
  };
}
