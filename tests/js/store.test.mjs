// The labeler's rules, without a browser: node --test tests/js
import assert from "node:assert/strict";
import { test } from "node:test";
import { isEmptySuggestion, LabelerStore, UndoHistory } from "../../services/annotation/webapp/static/store.js";

const TAGS = ["joghurt", "squash", "mushroom"];

test("key, draw, key, draw: each key chooses the label of the next box and relabels none", () => {
  const store = new LabelerStore({ tags: TAGS, type: "detection" });
  const labels = [];
  for (const [key, box] of [
    [0, 0],
    [1, 1],
    [2, 2],
  ]) {
    assert.deepEqual(store.press(key), { kind: "next-box", tag: TAGS[key] });
    labels.push(store.newBoxTag); // the box drawn now takes it
    store.boxDrawn(box);
    assert.equal(store.relabelBox, -1);
    assert.equal(store.selectedBox, box);
  }
  assert.deepEqual(labels, TAGS);
});

test("a picked box is relabelled by one key, the next key is about new boxes again", () => {
  const store = new LabelerStore({ tags: TAGS, type: "detection" });
  store.press(2);
  store.boxPicked(0);
  assert.deepEqual(store.press(1), { kind: "relabel", box: 0, tag: "squash" });
  assert.equal(store.newBoxTag, "mushroom"); // unchanged by the relabel
  assert.deepEqual(store.press(0), { kind: "next-box", tag: "joghurt" });
  store.boxPicked(1);
  store.unselected();
  assert.deepEqual(store.press(1), { kind: "next-box", tag: "squash" });
});

test("a new image forgets the selection, keeps the label for new boxes", () => {
  const store = new LabelerStore({ tags: TAGS, type: "detection" });
  store.press(1);
  store.boxPicked(3);
  store.imageShown();
  assert.equal(store.relabelBox, -1);
  assert.equal(store.newBoxTag, "squash");
});

test("classification keys set or toggle tags; a key without a tag does nothing", () => {
  const multiclass = new LabelerStore({ tags: TAGS, type: "multiclass" });
  assert.deepEqual(multiclass.press(1, ["joghurt"]), { kind: "set", tags: ["squash"] });
  const multilabel = new LabelerStore({ tags: TAGS, type: "multilabel" });
  assert.deepEqual(multilabel.press(1, ["joghurt"]), { kind: "toggle", tags: ["joghurt", "squash"] });
  assert.deepEqual(multilabel.press(0, ["joghurt", "squash"]), { kind: "toggle", tags: ["squash"] });
  assert.equal(multilabel.press(7), null);
});

test("an empty suggestion is never accepted at once, except where the server refuses it anyway", () => {
  const empty = { tags: [], regions: [] };
  assert.equal(isEmptySuggestion(empty), true);
  assert.equal(isEmptySuggestion({ tags: [], regions: [{ tag: "squash" }] }), false);
  assert.equal(isEmptySuggestion(null), false);
  assert.equal(new LabelerStore({ tags: TAGS, type: "detection" }).acceptsAtOnce(empty), false);
  assert.equal(new LabelerStore({ tags: TAGS, type: "multilabel" }).acceptsAtOnce(empty), false);
  assert.equal(new LabelerStore({ tags: TAGS, type: "multiclass" }).acceptsAtOnce(empty), true);
  assert.equal(new LabelerStore({ tags: TAGS, type: "detection" }).acceptsAtOnce({ tags: ["a"], regions: [{}] }), true);
});

test("undo: newest first, per store, bounded", () => {
  const one = new LabelerStore({ tags: TAGS, type: "multiclass" });
  const two = new LabelerStore({ tags: TAGS, type: "multiclass" });
  one.undo.push({ id: "a" });
  one.undo.push({ id: "b" });
  assert.equal(two.undo.size, 0); // no history shared between labelers
  assert.deepEqual(one.undo.pop(), { id: "b" });
  assert.deepEqual(one.undo.pop(), { id: "a" });
  assert.equal(one.undo.pop(), null);
  const bounded = new UndoHistory(2);
  for (const id of ["a", "b", "c"]) bounded.push({ id });
  assert.deepEqual([bounded.pop(), bounded.pop(), bounded.pop()], [{ id: "c" }, { id: "b" }, null]);
});
