// What goes up and comes down in bulk, apart from the page: the files of a drop (folders walked), which
// tags each uploaded image gets (one tag per dropped folder), the batches, and the NDJSON lines of an
// import's progress. No DOM beyond the drop's entries, so Node's test runner checks the rules
// (tests/js/transfers.test.mjs).

// Images the annotation service takes (JPEG, PNG, BMP, GIF, WebP), by name.
const IMAGE_NAME = /\.(jpe?g|png|bmp|gif|webp)$/i;
// What file managers leave in folders: never uploaded.
const HIDDEN = (name) => name.startsWith(".") || name === "__MACOSX" || /^(thumbs\.db|desktop\.ini)$/i.test(name);
// The annotation service's tag names: letters, digits, spaces and . + - _, at most 64 characters.
const TAG_NAME = /^[\p{L}\p{N}_][\p{L}\p{N}_ .+-]*$/u;

export const isTagName = (name) => name.length <= 64 && TAG_NAME.test(name);

// A drop's entries and loose files, read at once: the DataTransfer is emptied when the drop handler
// returns, so this runs before anything is awaited.
export function droppedEntries(transfer) {
  const entries = [];
  const loose = [];
  for (const item of transfer.items ?? []) {
    if (item.kind !== "file") continue;
    const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    if (entry) entries.push(entry);
    else {
      const file = item.getAsFile();
      if (file) loose.push(file);
    }
  }
  if (!entries.length && !loose.length) loose.push(...(transfer.files ?? []));
  return { entries, loose };
}

const fileOf = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));
const nextEntries = (reader) => new Promise((resolve, reject) => reader.readEntries(resolve, reject));

// Every file under the dropped entries (FileSystemEntry: folders walked to any depth), each with the name
// of the folder it is directly in (null for a file dropped as itself) and its path in the drop.
export async function walkEntries(entries) {
  const found = [];
  async function visit(entry, folder, path) {
    if (HIDDEN(entry.name)) return;
    if (entry.isFile) {
      found.push({ file: await fileOf(entry), folder, path: `${path}${entry.name}` });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      // readEntries answers in batches (100 at most in Chromium) until an empty one.
      for (let batch = await nextEntries(reader); batch.length; batch = await nextEntries(reader)) {
        for (const child of batch) await visit(child, entry.name, `${path}${entry.name}/`);
      }
    }
  }
  for (const entry of entries) await visit(entry, null, "");
  return found;
}

// The files a folder picker (<input webkitdirectory>) gives, as walkEntries gives them.
export function pickedFolderFiles(files) {
  return [...files]
    .filter((file) => !(file.webkitRelativePath || file.name).split("/").some(HIDDEN))
    .map((file) => {
      const parts = (file.webkitRelativePath || file.name).split("/");
      return { file, folder: parts.length > 1 ? parts[parts.length - 2] : null, path: parts.join("/") };
    });
}

// Which tags each file is uploaded with, grouped (one upload request carries one set of tags):
//   files: [{file, folder, path}] (folder null: not from a folder); type: the project's type;
//   chosen: the tag picked for the upload ("" for none); byFolder: a folder's name tags its images.
// A multiclass image gets its folder's tag (the chosen one when it is in no folder); a multilabel image
// gets both; detection images get no tag (boxes label them). Files of folders that are not images are
// left out. Answers {groups: [{tags, files}], newTags: folder tags the project lacks, notes: what a
// person should know (folders whose name is no tag name, files left out)}.
export function planUpload(files, { type, chosen = "", byFolder = true, knownTags = [] }) {
  const groups = new Map();
  const newTags = [];
  const notes = [];
  const badFolders = new Map();
  const notImages = [];
  let foldersIgnored = false;
  for (const { file, folder, path } of files) {
    if (folder !== null && !IMAGE_NAME.test(file.name)) {
      notImages.push(path || file.name);
      continue;
    }
    const tags = [];
    if (type !== "detection") {
      const folderTag = folder === null || !byFolder ? null : folder.trim();
      if (folderTag !== null && !isTagName(folderTag)) badFolders.set(folder, (badFolders.get(folder) || 0) + 1);
      const usable = folderTag !== null && isTagName(folderTag) ? folderTag : null;
      if (usable && type === "multiclass") tags.push(usable);
      else {
        if (chosen) tags.push(chosen);
        if (usable && usable !== chosen) tags.push(usable);
      }
      if (usable && !knownTags.includes(usable) && !newTags.includes(usable)) newTags.push(usable);
    } else if (folder !== null && byFolder) foldersIgnored = true;
    const key = JSON.stringify(tags);
    if (!groups.has(key)) groups.set(key, { tags, files: [] });
    groups.get(key).files.push(file);
  }
  for (const [folder, count] of badFolders) {
    notes.push(
      `folder "${folder}" is not a tag name (letters, digits, spaces and . + - _, at most 64 characters): ` +
        `its ${count} image${count === 1 ? "" : "s"} went up ${chosen ? `tagged ${chosen} only` : "without a tag"}`,
    );
  }
  if (notImages.length) {
    const shown = notImages.slice(0, 3).join(", ") + (notImages.length > 3 ? ", …" : "");
    notes.push(`left out ${notImages.length} file(s) that are not images (${shown})`);
  }
  if (foldersIgnored) notes.push("detection images are labeled with boxes, so folder names did not become tags");
  return { groups: [...groups.values()], newTags, notes };
}

// `items` in pieces of at most `size`.
export function chunks(items, size) {
  const pieces = [];
  for (let i = 0; i < items.length; i += size) pieces.push(items.slice(i, i + size));
  return pieces;
}

// Files in upload requests: at most `count` files and `bytes` bytes a request (a larger file goes alone;
// the service names it if it is over its limit per image).
export function uploadBatches(files, count = 32, bytes = 64 * 1024 * 1024) {
  const batches = [];
  let batch = [];
  let size = 0;
  for (const file of files) {
    if (batch.length && (batch.length === count || size + file.size > bytes)) {
      batches.push(batch);
      batch = [];
      size = 0;
    }
    batch.push(file);
    size += file.size;
  }
  if (batch.length) batches.push(batch);
  return batches;
}

// Newline-delimited JSON arriving in pieces (an import's progress): push the text received so far and
// get the objects of the lines it completed.
export class LineReader {
  constructor() {
    this.seen = 0;
    this.partial = "";
  }

  // `text`: everything received so far (XMLHttpRequest's responseText grows).
  read(text) {
    const fresh = this.partial + text.slice(this.seen);
    this.seen = text.length;
    const lines = fresh.split("\n");
    this.partial = lines.pop();
    return lines.filter((line) => line.trim()).map((line) => JSON.parse(line));
  }
}

// A bulk answer's failures ({results: [{id, status, error}]}) in words: "1 failed: 3f2a9c1b… no such image".
export function failures(answer) {
  const failed = answer.results.filter((r) => r.status === "not_found" || r.status === "rejected");
  if (!failed.length) return "";
  const shown = failed.slice(0, 3).map((r) => `${r.id.slice(0, 8)}…: ${r.error}`);
  return `${failed.length} failed (${shown.join("; ")}${failed.length > 3 ? "; …" : ""})`;
}
