// The review queue: predictions the scoring service captured, most uncertain first. The current item
// is shown large with what the model proposed drawn on it: boxes (detection) to correct before
// accepting (draw, move, resize, relabel, delete, as in the labeler), or tags (classification), where
// a number key accepts with that tag and a new tag can be added on the spot. A accepts, R rejects,
// U takes the last decision back. An empty queue says whether the scoring service captures at all.
import { allTags, api, imageUrl, projectPath } from "./api.js";
import { BoxEditor, colourOf, loadStyle } from "./boxes.js";
import { LabelerStore, UndoHistory } from "./store.js";
import { fail, h, percent, say } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";

function predicted(item) {
  const p = item.prediction || {};
  if (item.task === "detection") return `${(p.detections || []).length} box(es)`;
  if (p.tags) return p.tags.map((t) => `${t.label} ${percent(t.probability)}`).join(", ") || "no tag";
  return p.label ? `${p.label} ${percent(p.probability || 0)}` : "nothing";
}

// The model's boxes over a thumbnail, outlines only.
function boxesOver(item) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${item.width} ${item.height}`);
  // Letterboxed like the thumbnail under it (object-fit: contain), so each box lies on its object.
  svg.setAttribute("class", "thumb-boxes");
  svg.setAttribute("aria-hidden", "true");
  const line = Math.max(2, Math.min(item.width, item.height) / 60);
  for (const r of item.suggested?.regions || []) {
    const rect = document.createElementNS(SVG, "rect");
    for (const [key, value] of Object.entries({
      x: r.left * item.width,
      y: r.top * item.height,
      width: r.width * item.width,
      height: r.height * item.height,
      fill: "none",
      stroke: colourOf(r.tag),
      "stroke-width": line,
    }))
      rect.setAttribute(key, value);
    svg.append(rect);
  }
  return svg;
}

function captureText(status) {
  if (!status) return "";
  if (!status.scoring_reachable)
    return `No captured predictions yet. Whether the scoring service captures could not be asked (${status.detail}); to send predictions here, ${status.how_to_turn_on}.`;
  if (!status.capture_rate)
    return `Capture is off: the scoring service sends no predictions for review. To turn it on, ${status.how_to_turn_on}.`;
  const served = status.model_served
    ? "and it serves this project's model: new ones appear as the model is used"
    : "but it does not serve this project's model yet (train the project and promote a version)";
  return `Capture is on: the scoring service sends ${percent(status.capture_rate)} of its predictions here, ${served}.`;
}

export async function reviewView(main, project) {
  const [info, tags] = await Promise.all([api(projectPath(project)), allTags(project)]);
  await loadStyle(tags);
  const detection = info.type === "detection";
  // Which label new or picked boxes take (number keys), as in the labeler; and the decisions to take back.
  const store = new LabelerStore({ tags, type: info.type });
  const decisions = new UndoHistory();
  let current = null;
  let editor = null;
  let edited = false;
  let continuation = null;
  let confirmingEmpty = false;

  const list = h("ol", { class: "review-list", "aria-label": "Pending review items, most uncertain first" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "overlay");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "The captured image");
  const stage = h("div", { class: "stage" }, svg);
  const summary = h("p", { class: "review-summary" });
  const tagButtons = h("div", {
    class: "tag-buttons",
    role: "group",
    "aria-label": detection ? "Label for new boxes" : "Accept with tag",
  });
  const boxList = h("ul", { class: "box-list", "aria-label": "Boxes to accept" });
  const warning = h("p", { class: "warning", role: "alert", hidden: true });
  const newTag = h("input", { id: "review-new-tag", placeholder: "new tag", autocomplete: "off" });
  const newTagForm = h(
    "form",
    { class: "inline", onsubmit: (event) => addTag(event) },
    h("label", { for: "review-new-tag" }, detection ? "New tag (for new boxes)" : "New tag (accept with it)"),
    newTag,
    h("button", { type: "submit" }, detection ? "Add tag" : "Add tag and accept"),
  );
  const acceptButton = h(
    "button",
    { type: "button", class: "primary", onclick: () => accept() },
    h("kbd", {}, "A"),
    " Accept",
  );
  const rejectButton = h("button", { type: "button", onclick: () => reject() }, h("kbd", {}, "R"), " Reject");
  const undoButton = h("button", { type: "button", onclick: () => undo() }, h("kbd", {}, "U"), " Undo last decision");
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
    h("button", { type: "button", onclick: () => editor?.fitView() }, h("kbd", {}, "0"), " Fit"),
  );
  const workspace = h(
    "section",
    { class: "labeler review-current", "aria-label": "Current item" },
    h("div", { class: "stage-column" }, tools, stage),
    h(
      "aside",
      { class: "side" },
      summary,
      warning,
      h("div", { class: "actions" }, acceptButton, rejectButton, undoButton),
      h("h2", {}, detection ? "Label for new boxes" : "Accept with tag"),
      tagButtons,
      newTagForm,
      detection ? [h("h2", {}, "Boxes"), boxList] : null,
    ),
  );
  const capture = h("p", { class: "capture-status" });
  const emptyText = h("p", { class: "capture-empty" });
  const empty = h(
    "section",
    { class: "empty-queue", "aria-label": "Empty queue", hidden: true },
    h("p", {}, h("strong", {}, "Nothing to review.")),
    emptyText,
  );
  const waiting = h("h2", {}, "Waiting");
  main.replaceChildren(
    h("h1", {}, "Review queue"),
    h(
      "p",
      { class: "help" },
      "Predictions the scoring service captured, most uncertain first. " +
        (detection
          ? "Correct the boxes on the photo as in the labeler (number keys choose the label of new boxes, a click then a key relabels, Delete removes, E moves and resizes), then A accepts them; "
          : "A accepts the prediction, a number key accepts with that tag (a new tag can be added); ") +
        "R rejects, U takes the last decision back.",
    ),
    capture,
    workspace,
    empty,
    waiting,
    list,
    more,
  );

  function renderTags() {
    tagButtons.replaceChildren(
      ...tags.map((tag, i) => {
        const on = detection && tag === store.newBoxTag;
        return h(
          "button",
          {
            type: "button",
            class: on ? "tag on" : "tag",
            "aria-pressed": detection ? String(on) : false,
            style: `--tag: ${colourOf(tag)}`,
            onclick: () => press(i),
          },
          h("kbd", {}, i < 9 ? String(i + 1) : ""),
          ` ${tag}`,
        );
      }),
    );
  }

  function renderBoxes() {
    if (!detection || !editor) return;
    const regions = editor.regions();
    boxList.replaceChildren(
      ...regions.map((r, i) =>
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
    if (!regions.length)
      boxList.append(h("li", { class: "empty" }, "No box: accepting labels the image as showing nothing."));
    svg.setAttribute("aria-label", `${current.filename}: ${regions.length} boxes`);
  }

  function setMode(mode) {
    if (!editor || !detection) return;
    editor.setMode(mode);
    for (const button of tools.querySelectorAll("button.mode"))
      button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  }

  async function showCurrent() {
    const first = list.querySelector("li.item");
    current = first ? first.item : null;
    workspace.hidden = !current;
    empty.hidden = Boolean(current);
    capture.hidden = !current; // the empty queue says it larger
    warning.hidden = true;
    confirmingEmpty = false;
    for (const li of list.querySelectorAll("li.item")) li.classList.toggle("current", li === first);
    if (editor) editor.destroy();
    editor = null;
    if (!current) return;
    summary.replaceChildren(
      h("strong", {}, current.filename),
      h("br"),
      `${current.model} v${current.version} proposes ${predicted(current)} · uncertainty ${percent(current.uncertainty)}`,
    );
    stage.style.aspectRatio = `${current.width} / ${current.height}`;
    stage.style.maxWidth = `min(100%, calc(60vh * ${current.width / current.height}))`;
    store.imageShown();
    edited = false;
    editor = new BoxEditor(svg, {
      width: current.width,
      height: current.height,
      editable: detection,
      label: () => store.newBoxTag,
      onChange: () => {
        edited = true;
        renderBoxes();
      },
      onSelect: (i, picked) => {
        if (i < 0) store.unselected();
        else if (picked) store.boxPicked(i);
        else store.boxDrawn(i);
        renderBoxes();
      },
    });
    if (detection) {
      editor.setRegions(current.suggested?.regions || []);
      setMode("draw");
    }
    svg.setAttribute("aria-label", current.filename);
    renderTags();
    renderBoxes();
    editor.showPhoto(await imageUrl(`${projectPath(project)}/review-items/${current.id}/content`));
  }

  function row(item) {
    const img = h("img", { alt: `captured image ${item.filename}`, width: 120, height: 120 });
    imageUrl(`${projectPath(project)}/review-items/${item.id}/content`)
      .then((url) => {
        img.src = url;
      })
      .catch(() => {});
    const li = h(
      "li",
      { class: "item", dataset: { id: item.id } },
      h("span", { class: "thumb" }, img, detection ? boxesOver(item) : null),
      h(
        "div",
        {},
        h(
          "p",
          {},
          h("strong", {}, predicted(item)),
          ` · uncertainty ${percent(item.uncertainty)} · ${item.model} v${item.version}`,
        ),
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              list.prepend(li);
              showCurrent().catch(fail);
            },
          },
          "Review this one",
        ),
      ),
    );
    li.item = item;
    return li;
  }

  async function decide(action, body) {
    const item = current;
    const li = list.querySelector("li.item.current");
    try {
      const answer = await api(`${projectPath(project)}/review-items/${item.id}/${action}`, {
        method: "POST",
        json: body ?? {},
        headers: { "If-Match": item.etag },
      });
      decisions.push({ id: item.id, filename: item.filename, action });
      li.remove();
      const left = list.querySelectorAll("li.item").length;
      say(
        `${action === "accept" ? "Accepted" : "Rejected"} ${item.filename}. ${left} left on this page. U takes it back.`,
      );
      if (!left) await load(null);
      else await showCurrent();
      return answer;
    } catch (e) {
      fail(e);
      return null;
    }
  }

  async function accept(tag) {
    if (!current) return;
    if (detection) {
      const regions = editor.regions();
      if (!regions.length && !confirmingEmpty) {
        confirmingEmpty = true;
        warning.hidden = false;
        warning.textContent =
          "There is no box: accepting labels this image as showing nothing of the project. Press A again to accept it so, or draw the boxes.";
        return;
      }
      // Unchanged boxes are the prediction's: the item records that the model's labels were taken.
      await decide("accept", edited || !regions.length ? { regions } : {});
      return;
    }
    await decide("accept", tag === undefined ? {} : { tags: [tag] });
  }

  async function reject() {
    if (current) await decide("reject", { reason: "" });
  }

  async function undo() {
    const last = decisions.pop();
    if (!last) {
      say("Nothing to take back.");
      return;
    }
    try {
      await api(`${projectPath(project)}/review-items/${last.id}/reopen`, { method: "POST" });
      await load(null);
      const li = list.querySelector(`li.item[data-id="${last.id}"]`);
      if (li) {
        list.prepend(li);
        await showCurrent();
      }
      say(
        `${last.action === "accept" ? "Acceptance" : "Rejection"} of ${last.filename} taken back: it waits for review again.`,
      );
    } catch (e) {
      fail(e);
    }
  }

  function press(index) {
    if (!current) return;
    if (!detection) {
      accept(tags[index]).catch(fail);
      return;
    }
    const action = store.press(index);
    if (action?.kind === "relabel") {
      editor.relabel(action.box, action.tag);
      say(`Box relabelled: ${action.tag}.`);
    } else if (action) say(`New boxes: ${action.tag}`);
    renderTags();
    renderBoxes();
  }

  async function addTag(event) {
    event.preventDefault();
    const name = newTag.value.trim();
    if (!name) return;
    try {
      if (!tags.includes(name)) {
        await api(`${projectPath(project)}/tags`, { method: "POST", json: { name } });
        tags.push(name);
        store.tags.push(name);
        await loadStyle(tags);
      }
      newTag.value = "";
      if (detection) {
        store.press(tags.indexOf(name));
        renderTags();
        say(`Tag ${name} added: new boxes take it.`);
      } else {
        renderTags();
        await accept(name);
      }
    } catch (e) {
      fail(e);
    }
  }

  async function load(token) {
    const query = new URLSearchParams({ limit: 50 });
    if (token) query.set("continuation", token);
    const page = await api(`${projectPath(project)}/review-items?${query}`);
    if (!token) list.replaceChildren();
    list.append(...page.data.map(row));
    continuation = page.continuation;
    more.hidden = !continuation;
    waiting.hidden = !list.children.length;
    if (!list.children.length) refreshCapture().catch(fail);
    await showCurrent();
  }

  async function refreshCapture() {
    const status = await api(`${projectPath(project)}/review-capture`);
    capture.textContent = captureText(status);
    emptyText.textContent = capture.textContent;
  }

  more.addEventListener("click", () => load(continuation).catch(fail));

  function onKey(event) {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (key.toLowerCase() === "u") undo().catch(fail);
    else if (!current) return;
    else if (key.toLowerCase() === "a") accept().catch(fail);
    else if (key.toLowerCase() === "r") reject().catch(fail);
    else if (/^[1-9]$/.test(key) && tags[Number(key) - 1]) press(Number(key) - 1);
    else if (detection && key.toLowerCase() === "d") setMode("draw");
    else if (detection && key.toLowerCase() === "e") setMode("edit");
    else if ((key === "Delete" || key === "Backspace") && editor) editor.removeSelected();
    else if (key === "Escape" && editor) editor.select(-1);
    else if ((key === "+" || key === "=") && editor) editor.zoomBy(1.5);
    else if (key === "-" && editor) editor.zoomBy(1 / 1.5);
    else if (key === "0" && editor) editor.fitView();
    else if (event.shiftKey && key.startsWith("Arrow") && editor) {
      const [dx, dy] = { ArrowLeft: [-0.25, 0], ArrowRight: [0.25, 0], ArrowUp: [0, -0.25], ArrowDown: [0, 0.25] }[key];
      editor.panBy(dx, dy);
    } else return;
    event.preventDefault();
  }
  document.addEventListener("keydown", onKey);
  refreshCapture().catch(() => {
    capture.textContent = "";
  });
  await load(null);
  return () => {
    document.removeEventListener("keydown", onKey);
    if (editor) editor.destroy();
  };
}
