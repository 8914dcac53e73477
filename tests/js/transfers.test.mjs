// Uploads by folder, batches and import progress, without a browser: node --test tests/js
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  chunks,
  droppedEntries,
  failures,
  isTagName,
  LineReader,
  pickedFolderFiles,
  planUpload,
  uploadBatches,
  walkEntries,
} from "../../services/annotation/webapp/static/transfers.js";

// FileSystemEntry as Chromium gives it for a drop: readEntries answers in batches of at most 100, then [].
function fileEntry(name, size = 1) {
  return {
    name,
    isFile: true,
    isDirectory: false,
    file: (ok) => setTimeout(() => ok(new File(["x".repeat(size)], name))),
  };
}

function folderEntry(name, children) {
  return {
    name,
    isFile: false,
    isDirectory: true,
    createReader() {
      let at = 0;
      return {
        readEntries(ok) {
          const batch = children.slice(at, at + 100);
          at += batch.length;
          setTimeout(() => ok(batch));
        },
      };
    },
  };
}

const found = (file, folder, path = file) => ({ file: new File(["x"], file), folder, path });

test("a dropped folder is walked to any depth, past readEntries' batches of 100, hidden files left out", async () => {
  const many = Array.from({ length: 230 }, (_, i) => fileEntry(`rose-${i}.jpg`));
  const entries = [
    folderEntry("flowers", [
      folderEntry("rose", many),
      fileEntry("tulip.png"),
      fileEntry(".DS_Store"),
      folderEntry("__MACOSX", [fileEntry("rose-0.jpg")]),
    ]),
    fileEntry("loose.jpg"),
  ];
  const files = await walkEntries(entries);
  assert.equal(files.length, 232);
  assert.equal(files.filter((f) => f.folder === "rose").length, 230);
  assert.deepEqual(
    files.filter((f) => f.folder !== "rose").map(({ folder, path }) => [folder, path]),
    [
      ["flowers", "flowers/tulip.png"],
      [null, "loose.jpg"],
    ],
  );
  assert.equal(files[0].path, "flowers/rose/rose-0.jpg");
  assert.ok(files[0].file instanceof File);
});

test("a drop's entries are taken from its items; without entries its files are loose files", () => {
  const folder = folderEntry("rose", []);
  const transfer = {
    items: [
      { kind: "file", webkitGetAsEntry: () => folder },
      { kind: "string", webkitGetAsEntry: () => null },
      { kind: "file", webkitGetAsEntry: () => null, getAsFile: () => new File(["x"], "a.jpg") },
    ],
    files: [],
  };
  const { entries, loose } = droppedEntries(transfer);
  assert.deepEqual(entries, [folder]);
  assert.deepEqual(
    loose.map((f) => f.name),
    ["a.jpg"],
  );
  const plain = droppedEntries({ items: [], files: [new File(["x"], "b.jpg")] });
  assert.deepEqual(
    plain.loose.map((f) => f.name),
    ["b.jpg"],
  );
});

test("a picked folder's files carry the folder they are directly in", () => {
  const file = (path) => Object.assign(new File(["x"], path.split("/").pop()), { webkitRelativePath: path });
  const files = pickedFolderFiles([file("photos/rose/1.jpg"), file("photos/2.jpg"), file("photos/.git/x.jpg")]);
  assert.deepEqual(
    files.map(({ folder, path }) => [folder, path]),
    [
      ["rose", "photos/rose/1.jpg"],
      ["photos", "photos/2.jpg"],
    ],
  );
});

test("multiclass: each folder's name is its images' tag, the chosen tag goes on loose files", () => {
  const plan = planUpload(
    [found("1.jpg", "rose"), found("2.jpg", "tulip"), found("3.jpg", "rose"), found("4.jpg", null)],
    { type: "multiclass", chosen: "daisy", knownTags: ["daisy", "rose"] },
  );
  assert.deepEqual(
    plan.groups.map((g) => [g.tags, g.files.map((f) => f.name)]),
    [
      [["rose"], ["1.jpg", "3.jpg"]],
      [["tulip"], ["2.jpg"]],
      [["daisy"], ["4.jpg"]],
    ],
  );
  assert.deepEqual(plan.newTags, ["tulip"]);
  assert.deepEqual(plan.notes, []);
});

test("multilabel: a folder's tag joins the chosen one; without byFolder only the chosen one", () => {
  const files = [found("1.jpg", "sunny"), found("2.jpg", null)];
  const both = planUpload(files, { type: "multilabel", chosen: "beach", knownTags: ["beach", "sunny"] });
  assert.deepEqual(
    both.groups.map((g) => g.tags),
    [["beach", "sunny"], ["beach"]],
  );
  const chosenOnly = planUpload(files, { type: "multilabel", chosen: "beach", byFolder: false, knownTags: [] });
  assert.deepEqual(
    chosenOnly.groups.map((g) => [g.tags, g.files.length]),
    [[["beach"], 2]],
  );
  assert.deepEqual(chosenOnly.newTags, []);
});

test("a folder whose name is no tag name tags nothing, and says so; non-images of folders are left out", () => {
  const plan = planUpload(
    [
      found("1.jpg", "my photos (2)"),
      found("2.JPG", "my photos (2)"),
      found("notes.txt", "rose", "rose/notes.txt"),
      found("a.txt", null),
    ],
    { type: "multiclass", chosen: "" },
  );
  assert.deepEqual(
    plan.groups.map((g) => [g.tags, g.files.map((f) => f.name)]),
    [[[], ["1.jpg", "2.JPG", "a.txt"]]], // a loose file goes up as chosen: the service names what it refuses
  );
  assert.equal(plan.notes.length, 2);
  assert.match(plan.notes[0], /folder "my photos \(2\)" is not a tag name .*its 2 images went up without a tag/);
  assert.match(plan.notes[1], /left out 1 file\(s\) that are not images \(rose\/notes\.txt\)/);
});

test("detection: no tags at upload; folders are named in a note", () => {
  const plan = planUpload([found("1.jpg", "shelf"), found("2.jpg", null)], { type: "detection", chosen: "x" });
  assert.deepEqual(
    plan.groups.map((g) => [g.tags, g.files.length]),
    [[[], 2]],
  );
  assert.deepEqual(plan.newTags, []);
  assert.match(plan.notes[0], /detection images are labeled with boxes/);
});

test("tag names follow the service's rule", () => {
  for (const good of ["rose", "Rose 2", "crème brûlée", "a.b+c-d_e", "x".repeat(64)]) assert.ok(isTagName(good), good);
  for (const bad of ["", " lead", "-x", "a/b", "a(1)", "x".repeat(65)]) assert.ok(!isTagName(bad), bad);
});

test("batches, NDJSON lines arriving in pieces, and failures in words", () => {
  assert.deepEqual(chunks([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  const reader = new LineReader();
  let text = '{"event": "progress", "done": 0, "total": 2}\n{"event": "prog';
  assert.deepEqual(reader.read(text), [{ event: "progress", done: 0, total: 2 }]);
  text += 'ress", "done": 1, "total": 2}\n';
  assert.deepEqual(reader.read(text), [{ event: "progress", done: 1, total: 2 }]);
  text += '{"event": "report", "report": {"created": 2}}';
  assert.deepEqual(reader.read(text), []); // no newline yet
  assert.deepEqual(reader.read(`${text}\n`), [{ event: "report", report: { created: 2 } }]);
  const answer = {
    results: [
      { id: "a".repeat(64), status: "updated", error: null },
      { id: "b".repeat(64), status: "not_found", error: "no such image in the project" },
    ],
  };
  assert.equal(failures(answer), "1 failed (bbbbbbbb…: no such image in the project)");
  assert.equal(failures({ results: [] }), "");
});

test("upload requests hold 32 files and 64 MB at most; a file over that goes alone", () => {
  const sized = (sizes) => sizes.map((size, i) => ({ name: `${i}.jpg`, size }));
  const MB = 1024 * 1024;
  assert.deepEqual(
    uploadBatches(sized(Array(70).fill(1000))).map((b) => b.length),
    [32, 32, 6],
  );
  assert.deepEqual(
    uploadBatches(sized([30 * MB, 30 * MB, 30 * MB, 100 * MB, 1 * MB])).map((b) => b.map((f) => f.name)),
    [["0.jpg", "1.jpg"], ["2.jpg"], ["3.jpg"], ["4.jpg"]],
  );
  assert.deepEqual(uploadBatches([]), []);
});
