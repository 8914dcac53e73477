// The grid's selection rules, without a browser: node --test tests/js
import assert from "node:assert/strict";
import { test } from "node:test";
import { GridSelection, neighbour } from "../../services/annotation/webapp/static/selection.js";

const IDS = ["a", "b", "c", "d", "e", "f"];

function grid() {
  const selection = new GridSelection();
  selection.show(IDS);
  return selection;
}

test("a click toggles one image; Ctrl+click adds to the selection rather than replacing it", () => {
  const s = grid();
  assert.equal(s.toggle("b"), true);
  assert.equal(s.toggle("e"), true);
  assert.deepEqual(s.ids, ["b", "e"]);
  assert.equal(s.toggle("b"), false);
  assert.deepEqual(s.ids, ["e"]);
  assert.equal(s.anchor, "b");
});

test("Shift+click selects the range from the last click, in either direction", () => {
  const s = grid();
  s.toggle("b");
  s.extendTo("e");
  assert.deepEqual(s.ids.sort(), ["b", "c", "d", "e"]);
  const back = grid();
  back.toggle("e");
  back.extendTo("a");
  assert.deepEqual(back.ids.sort(), ["a", "b", "c", "d", "e"]);
});

test("Shift+click on a selected image takes the range out, as in a mail inbox", () => {
  const s = grid();
  s.selectAll();
  s.toggle("b"); // out, anchor b
  s.extendTo("d"); // d is selected: the range b..d goes out
  assert.deepEqual(s.ids.sort(), ["a", "e", "f"]);
});

test("a ticked box gives its state to the range (extendTo with the box's state)", () => {
  const s = grid();
  s.toggle("a");
  assert.equal(s.extendTo("c", true), true);
  assert.deepEqual(s.ids.sort(), ["a", "b", "c"]);
  assert.equal(s.extendTo("b", false), false); // from c to b, unticked
  assert.deepEqual(s.ids.sort(), ["a"]);
});

test("Shift without an anchor, or with one no longer shown, toggles only the image clicked", () => {
  const s = grid();
  s.extendTo("c");
  assert.deepEqual(s.ids, ["c"]);
  s.show(["d", "e", "f"]); // another filter: c is not shown, it stays selected
  assert.equal(s.anchor, null);
  s.extendTo("f");
  assert.deepEqual(s.ids.sort(), ["c", "f"]);
  assert.equal(s.hidden, 1);
});

test("select all adds the page, or every id given (all the filter matches); clear empties", () => {
  const s = grid();
  s.selectAll();
  assert.equal(s.size, 6);
  s.selectAll(["x", "y"]);
  assert.equal(s.size, 8);
  assert.equal(s.hidden, 2);
  s.clear();
  assert.equal(s.size, 0);
  assert.equal(s.anchor, null);
});

test("deleted images leave the grid and the selection", () => {
  const s = grid();
  s.selectAll(["b", "c", "d"]);
  s.toggle("f");
  s.forget(["c", "f", "zz"]);
  assert.deepEqual(s.order, ["a", "b", "d", "e"]);
  assert.deepEqual(s.ids.sort(), ["b", "d"]);
  assert.equal(s.anchor, null);
});

test("arrow keys move by one tile or one row, and stay at the edges", () => {
  // 7 tiles, 3 a row:  0 1 2 / 3 4 5 / 6
  assert.equal(neighbour(4, "ArrowLeft", 3, 7), 3);
  assert.equal(neighbour(4, "ArrowRight", 3, 7), 5);
  assert.equal(neighbour(4, "ArrowUp", 3, 7), 1);
  assert.equal(neighbour(4, "ArrowDown", 3, 7), 4); // no tile below
  assert.equal(neighbour(3, "ArrowDown", 3, 7), 6);
  assert.equal(neighbour(0, "ArrowLeft", 3, 7), 0);
  assert.equal(neighbour(1, "ArrowUp", 3, 7), 1);
  assert.equal(neighbour(4, "Home", 3, 7), 0);
  assert.equal(neighbour(4, "End", 3, 7), 6);
  assert.equal(neighbour(4, "x", 3, 7), 4);
});
