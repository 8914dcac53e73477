// Import and export of a project's dataset: a zip in any format the service reads (folder, coco, voc,
// yolo, csv, product) goes up with a progress bar (the upload, then one line per image as the service
// stores them) and its report is shown in full; an export (format; every labeled image, one split, or the
// snapshot a model version learned from) comes down as a file.
import { ApiError, api, projectPath, registry, session } from "./api.js";
import { LineReader } from "./transfers.js";
import { fail, h, say } from "./ui.js";

const images = (n) => `${n} image${n === 1 ? "" : "s"}`;
const megabytes = (bytes) => (bytes < 1e6 ? `${Math.ceil(bytes / 1e3)} kB` : `${(bytes / 1e6).toFixed(1)} MB`);

// POSTs the import form; `progress({phase, done, total})` as the archive goes up ("upload", bytes) and
// as the service stores the images ("images"). Answers the report; throws ApiError with the service's
// reason, or an Error saying how far an interrupted import came.
export function sendImport(project, form, progress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const lines = new LineReader();
    let report = null;
    let stored = { done: 0, total: 0 };
    const readLines = () => {
      if (request.status !== 200) return;
      for (const event of lines.read(request.responseText)) {
        if (event.event === "progress") {
          stored = event;
          progress({ phase: "images", done: event.done, total: event.total });
        } else if (event.event === "report") report = event.report;
      }
    };
    request.open("POST", `${projectPath(project)}/imports`);
    request.setRequestHeader("X-API-Key", session.key || "");
    request.setRequestHeader("Accept", "application/x-ndjson");
    request.upload.addEventListener("progress", (e) => progress({ phase: "upload", done: e.loaded, total: e.total }));
    request.addEventListener("progress", readLines);
    request.addEventListener("load", () => {
      if (request.status !== 200) {
        let detail = request.statusText;
        try {
          detail = JSON.parse(request.responseText).detail || detail;
        } catch {
          // not JSON: the status text says it
        }
        if (request.status === 401) window.dispatchEvent(new CustomEvent("signed-out"));
        reject(new ApiError(request.status, detail));
        return;
      }
      readLines();
      if (report) resolve(report);
      else
        reject(
          new Error(
            `the import stopped after ${stored.done} of ${images(stored.total)} without its report; ` +
              "what went in is kept, and importing the same archive again completes it",
          ),
        );
    });
    request.addEventListener("error", () =>
      reject(new Error("the connection to the annotation service broke during the import; import the archive again")),
    );
    request.send(form);
  });
}

function reportView(report) {
  const facts = [
    ["Images found", report.images],
    ["New", report.created],
    ["Already in the project", report.duplicates],
    ["Labeled by this import", report.labeled],
    ["Already labeled the same", report.unchanged],
    ["Left unlabeled", report.unlabeled],
    ["Boxes", report.boxes],
    ["Tags created", report.tags_created.join(", ") || "none"],
  ];
  const list = (title, items, text) =>
    items.length
      ? h(
          "details",
          { open: true },
          h("summary", {}, `${title} (${items.length})`),
          h(
            "ul",
            {},
            items.map((item) => h("li", {}, item.path ? [h("code", {}, item.path), ": "] : null, text(item))),
          ),
        )
      : null;
  return h(
    "section",
    { class: "import-report", "aria-label": "Import report" },
    h("h3", {}, `Import report (${report.format})`),
    h(
      "dl",
      {},
      facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, String(value))]),
    ),
    list("Skipped", report.skipped, (item) => item.reason),
    list("Kept their own labels", report.conflicts, (item) => item.reason),
    list("Notes", report.notes, (item) => item.note),
  );
}

// A file the browser saves: the answer's bytes, named as the service names them.
function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

export async function datasetView(main, project) {
  const [info, formats] = await Promise.all([api(projectPath(project)), api("/v1/dataset-formats")]);
  const detection = info.type === "detection";
  const formatOptions = (usable) =>
    formats.data.map((f) =>
      h("option", { value: f.name, disabled: !usable(f) }, `${f.name}${usable(f) ? "" : " (not for this project)"}`),
    );
  const summaryOf = (name) => formats.data.find((f) => f.name === name)?.summary ?? "";
  // The chosen format's summary under its field.
  const described = (select, help) => {
    const show = () => {
      help.textContent = summaryOf(select.value);
    };
    select.addEventListener("change", show);
    show();
  };

  // -- import ---------------------------------------------------------------------
  const importFormat = h("select", { id: "import-format" });
  importFormat.append(...formatOptions((f) => !detection || f.carries_boxes));
  importFormat.value = detection ? "coco" : "folder";
  const importFormatHelp = h("span", { class: "help", id: "import-format-help" });
  described(importFormat, importFormatHelp);
  importFormat.setAttribute("aria-describedby", importFormatHelp.id);
  const archive = h("input", { id: "import-archive", type: "file", accept: ".zip,application/zip", required: true });
  const importSplit = h(
    "select",
    { id: "import-split" },
    h("option", { value: "" }, "none (the trainer splits)"),
    h("option", { value: "train" }, "train"),
    h("option", { value: "test" }, "test"),
  );
  const replace = h("input", { id: "import-replace", type: "checkbox" });
  const importButton = h("button", { type: "submit", class: "primary" }, "Import");
  const importProgress = h("progress", { id: "import-progress", hidden: true, "aria-label": "Import" });
  const importState = h("p", { class: "progress-text", "aria-live": "polite" });
  const report = h("div");
  const dropzone = h("div", { class: "dropzone", id: "import-drop" }, "Drop a zip archive here, or choose it above.");
  dropzone.addEventListener("dragover", (e) => {
    e.preventDefault();
    dropzone.classList.add("over");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    dropzone.classList.remove("over");
    if (!e.dataTransfer.files.length) return;
    const chosen = new DataTransfer();
    chosen.items.add(e.dataTransfer.files[0]);
    archive.files = chosen.files;
    importState.textContent = `${archive.files[0].name} is ready to import.`;
  });

  async function runImport(event) {
    event.preventDefault();
    const file = archive.files[0];
    if (!file) {
      say("Choose a zip archive first.", "error");
      return;
    }
    const form = new FormData();
    form.append("archive", file, file.name);
    form.append("format", importFormat.value);
    if (importSplit.value) form.append("split", importSplit.value);
    if (replace.checked) form.append("replace_labels", "true");
    importButton.disabled = true;
    importProgress.hidden = false;
    importProgress.removeAttribute("value");
    report.replaceChildren();
    say(`Importing ${file.name} as ${importFormat.value}…`);
    try {
      const answer = await sendImport(project, form, ({ phase, done, total }) => {
        importProgress.max = Math.max(total, 1);
        importProgress.value = done;
        importState.textContent =
          phase === "upload"
            ? `Sending ${file.name}: ${megabytes(done)} of ${megabytes(total)}`
            : `Storing images: ${done} of ${total}`;
      });
      report.replaceChildren(reportView(answer));
      importState.textContent = "";
      const skipped = answer.skipped.length ? `, ${answer.skipped.length} skipped (see the report)` : "";
      say(
        `Imported ${file.name}: ${answer.created} new, ${answer.duplicates} already there, ${answer.labeled} labeled${skipped}.`,
      );
    } catch (e) {
      importState.textContent = `Import failed: ${e.message}`;
      fail(e);
    } finally {
      importButton.disabled = false;
      importProgress.hidden = true;
    }
  }

  // -- export ---------------------------------------------------------------------
  const exportFormat = h("select", { id: "export-format" });
  exportFormat.append(...formatOptions((f) => f.exports.includes(info.type)));
  exportFormat.value = "coco";
  const exportFormatHelp = h("span", { class: "help", id: "export-format-help" });
  described(exportFormat, exportFormatHelp);
  exportFormat.setAttribute("aria-describedby", exportFormatHelp.id);
  const choice = (value, text, checked = false) =>
    h(
      "span",
      { class: "check" },
      h("input", { type: "radio", name: "export-what", id: `export-what-${value}`, value, checked }),
      h("label", { for: `export-what-${value}` }, text),
    );
  const exportSplit = h(
    "select",
    { id: "export-split", "aria-label": "Split to export" },
    h("option", { value: "train" }, "train"),
    h("option", { value: "test" }, "test"),
    h("option", { value: "none" }, "none"),
  );
  const exportVersion = h("select", { id: "export-version", "aria-label": "Model version" });
  const versionsNote = h("span", { class: "help" });
  const exportButton = h("button", { type: "submit", class: "primary" }, "Export");
  const exportProgress = h("progress", { id: "export-progress", hidden: true, "aria-label": "Export" });
  const exportState = h("p", { class: "progress-text", "aria-live": "polite" });
  const what = h(
    "fieldset",
    { class: "choices" },
    h("legend", {}, "Images"),
    h("div", {}, choice("all", "every labeled image", true)),
    h("div", {}, choice("split", "one split:"), " ", exportSplit),
    h(
      "div",
      {},
      choice("snapshot", `what a version of model ${project} learned from:`),
      " ",
      exportVersion,
      " ",
      versionsNote,
    ),
  );
  // Choosing a split or a version picks its option too.
  exportSplit.addEventListener("change", () => {
    what.querySelector("#export-what-split").checked = true;
  });
  exportVersion.addEventListener("change", () => {
    what.querySelector("#export-what-snapshot").checked = true;
  });

  async function listVersions() {
    try {
      const list = (await registry(`/v1/models/${encodeURIComponent(project)}/versions?limit=100`)).data;
      exportVersion.replaceChildren(
        ...list.map((v) =>
          h("option", { value: v.version }, `version ${v.version} (${new Date(v.created_at).toLocaleDateString()})`),
        ),
      );
      if (!list.length) versionsNote.textContent = "No version yet.";
    } catch (e) {
      versionsNote.textContent =
        e.status === 404 ? "No version yet: train one first." : `Versions unavailable: ${e.message}`;
    }
    const none = !exportVersion.options.length;
    exportVersion.disabled = none;
    what.querySelector("#export-what-snapshot").disabled = none;
  }

  // The image ids of a version's snapshot; refused when some are gone, a warning when some were relabeled.
  async function snapshotIds(version) {
    const lineage = await registry(`/v1/models/${encodeURIComponent(project)}/versions/${version}/lineage`);
    const then = new Map(lineage.dataset.images.map((i) => [i.id, i.label_revision]));
    const now = new Map();
    let continuation = null;
    do {
      const page = await api(`${projectPath(project)}/images`, { params: { limit: 1000, continuation } });
      for (const image of page.data) now.set(image.id, image.label_revision ?? 0);
      continuation = page.continuation;
    } while (continuation);
    const gone = [...then.keys()].filter((id) => !now.has(id));
    if (gone.length)
      throw new Error(`${images(gone.length)} of version ${version}'s snapshot are no longer in project ${project}`);
    const relabeled = [...then].filter(([id, revision]) => now.get(id) !== revision).length;
    return { ids: [...then.keys()], relabeled };
  }

  async function runExport(event) {
    event.preventDefault();
    const kind = what.querySelector("input[name=export-what]:checked").value;
    const format = exportFormat.value;
    exportButton.disabled = true;
    exportProgress.hidden = false;
    exportProgress.removeAttribute("value");
    let warning = "";
    try {
      let request;
      if (kind === "snapshot") {
        exportState.textContent = `Reading the snapshot of version ${exportVersion.value}…`;
        const { ids, relabeled } = await snapshotIds(exportVersion.value);
        if (relabeled)
          warning =
            ` ${images(relabeled)} ${relabeled === 1 ? "was" : "were"} relabeled since version ${exportVersion.value} ` +
            "learned from them: the archive has the labels as they are now.";
        request = fetch(`${projectPath(project)}/export`, {
          method: "POST",
          headers: { "X-API-Key": session.key || "", "Content-Type": "application/json" },
          body: JSON.stringify({ format, image_ids: ids }),
        });
      } else {
        const query = new URLSearchParams({ format });
        if (kind === "split") query.set("split", exportSplit.value);
        request = fetch(`${projectPath(project)}/export?${query}`, { headers: { "X-API-Key": session.key || "" } });
      }
      const answer = await request;
      if (!answer.ok) {
        const body = await answer.json().catch(() => ({}));
        if (answer.status === 401) window.dispatchEvent(new CustomEvent("signed-out"));
        throw new ApiError(answer.status, body.detail || answer.statusText);
      }
      const count = Number(answer.headers.get("X-Image-Count"));
      const leftOut = Number(answer.headers.get("X-Left-Out"));
      const filename =
        (answer.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/)?.[1] ||
        `${project}-${format}.zip`;
      // The archive streams image by image: the bytes so far are all there is to show.
      const reader = answer.body.getReader();
      const parts = [];
      let received = 0;
      for (let part = await reader.read(); !part.done; part = await reader.read()) {
        parts.push(part.value);
        received += part.value.length;
        exportState.textContent = `Downloading ${filename} (${images(count)}): ${megabytes(received)}`;
      }
      save(new Blob(parts, { type: "application/zip" }), filename);
      const left = leftOut ? ` (${leftOut} left out: unlabeled, or not expressible in ${format})` : "";
      exportState.textContent = `Saved ${filename}: ${images(count)}, ${megabytes(received)}${left}.${warning}`;
      say(`Exported ${images(count)} to ${filename}${left}.${warning}`, warning ? "error" : "info");
    } catch (e) {
      exportState.textContent = `Export failed: ${e.message}`;
      fail(e);
    } finally {
      exportButton.disabled = false;
      exportProgress.hidden = true;
    }
  }

  main.replaceChildren(
    h(
      "div",
      { class: "heading" },
      h("h1", {}, `Import and export: ${project}`, h("span", { class: "type" }, info.type)),
    ),
    h(
      "div",
      { class: "data-cards" },
      h(
        "form",
        { class: "card", "aria-labelledby": "import-title", onsubmit: runImport },
        h("h2", { id: "import-title" }, "Import a dataset"),
        h(
          "p",
          { class: "help" },
          "A zip archive in one of the formats below. Images already in the project (same bytes) are not added twice; ",
          "their labels are kept unless you ask to relabel them. Missing tags are created.",
        ),
        h(
          "div",
          { class: "fields" },
          h("label", { for: "import-format" }, "Format"),
          h("span", { class: "with-help" }, importFormat, importFormatHelp),
          h("label", { for: "import-archive" }, "Zip archive"),
          archive,
          h("label", { for: "import-split" }, "Split of new images"),
          importSplit,
          h("span"),
          h(
            "span",
            { class: "check" },
            replace,
            h("label", { for: "import-replace" }, "relabel images labeled otherwise"),
          ),
        ),
        dropzone,
        importButton,
        importProgress,
        importState,
        report,
      ),
      h(
        "form",
        { class: "card", "aria-labelledby": "export-title", onsubmit: runExport },
        h("h2", { id: "export-title" }, "Export"),
        h(
          "div",
          { class: "fields" },
          h("label", { for: "export-format" }, "Format"),
          h("span", { class: "with-help" }, exportFormat, exportFormatHelp),
        ),
        what,
        exportButton,
        exportProgress,
        exportState,
      ),
    ),
  );
  await listVersions();
}
