// Which images of the grid are selected, apart from the page: a click toggles one, Shift extends from the
// last one clicked (the anchor) to the one clicked now, and the grid's keys move between tiles. No DOM, so
// Node's test runner checks the rules (tests/js/selection.test.mjs).

export class GridSelection {
  constructor() {
    this.order = []; // the ids the grid shows, in its order
    this.selected = new Set(); // may hold ids the grid does not show (selected with "all matching")
    this.anchor = null; // where a Shift range starts: the last id toggled
  }

  // The grid's ids in order (a new filter, or "Load more"); the selection is kept.
  show(ids) {
    this.order = [...ids];
    if (this.anchor !== null && !this.order.includes(this.anchor)) this.anchor = null;
  }

  has(id) {
    return this.selected.has(id);
  }

  get size() {
    return this.selected.size;
  }

  get ids() {
    return [...this.selected];
  }

  // Selected ids the grid does not show now.
  get hidden() {
    const shown = new Set(this.order);
    return this.ids.filter((id) => !shown.has(id)).length;
  }

  // Ctrl/Cmd+click, a checkbox, Space: one image in or out; it becomes the anchor.
  toggle(id) {
    if (this.selected.has(id)) this.selected.delete(id);
    else this.selected.add(id);
    this.anchor = id;
    return this.selected.has(id);
  }

  // Shift+click: every image from the anchor to `id` takes the state `id` gets (selected, unless it was
  // selected: then the range is taken out), as in a mail inbox. Without an anchor it toggles `id`.
  extendTo(id, state = !this.selected.has(id)) {
    const from = this.order.indexOf(this.anchor);
    const to = this.order.indexOf(id);
    if (from < 0 || to < 0) return this.toggle(id);
    const [low, high] = from < to ? [from, to] : [to, from];
    for (const one of this.order.slice(low, high + 1)) {
      if (state) this.selected.add(one);
      else this.selected.delete(one);
    }
    this.anchor = id;
    return state;
  }

  // Every id given (the page, or every image the filter matches).
  selectAll(ids = this.order) {
    for (const id of ids) this.selected.add(id);
  }

  clear() {
    this.selected.clear();
    this.anchor = null;
  }

  // Images that are gone (deleted): out of the grid and the selection.
  forget(ids) {
    const gone = new Set(ids);
    this.order = this.order.filter((id) => !gone.has(id));
    for (const id of gone) this.selected.delete(id);
    if (gone.has(this.anchor)) this.anchor = null;
  }
}

// The tile an arrow key moves to from tile `index` in a grid of `count` tiles, `columns` a row; the same
// tile at an edge. Home and End go to the first and the last.
export function neighbour(index, key, columns, count) {
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns };
  if (key === "Home") return 0;
  if (key === "End") return count - 1;
  if (!(key in moves)) return index;
  const next = index + moves[key];
  return next >= 0 && next < count ? next : index;
}
