// The labeler's state, apart from the page: which label the next box gets, which box a key relabels,
// what a key press means, and the undo history. One store per labeler view (nothing module-global), no
// DOM, so Node's test runner checks the rules (tests/js/store.test.mjs).

// Changes that can be taken back, newest last; the oldest fall off past `limit`.
export class UndoHistory {
  constructor(limit = 500) {
    this.limit = limit;
    this.entries = [];
  }

  push(entry) {
    this.entries.push(entry);
    if (this.entries.length > this.limit) this.entries.shift();
  }

  pop() {
    return this.entries.pop() ?? null;
  }

  get size() {
    return this.entries.length;
  }
}

// A suggestion that proposes nothing (no box, no tag): never accepted without a confirmation.
export const isEmptySuggestion = (suggestion) =>
  Boolean(suggestion) && !suggestion.regions?.length && !suggestion.tags?.length;

export class LabelerStore {
  // tags: the project's tags in key order (key 1 is tags[0]); type: multiclass, multilabel or detection.
  constructor({ tags, type }) {
    this.tags = [...tags];
    this.type = type;
    this.newBoxTag = this.tags[0] ?? null;
    this.selectedBox = -1; // the box with handles (just drawn, or picked)
    this.relabelBox = -1; // the box a key relabels: only one a person picked, never one just drawn
    this.undo = new UndoHistory();
  }

  get detection() {
    return this.type === "detection";
  }

  // A new image: nothing selected, the label for new boxes kept.
  imageShown() {
    this.selectedBox = -1;
    this.relabelBox = -1;
  }

  boxDrawn(index) {
    this.selectedBox = index;
    this.relabelBox = -1;
  }

  boxPicked(index) {
    this.selectedBox = index;
    this.relabelBox = index;
  }

  unselected() {
    this.selectedBox = -1;
    this.relabelBox = -1;
  }

  // What number key `index` (0 for key 1) does now, the state updated for it:
  //   {kind: "relabel", box, tag}   a picked box takes the tag (once: the next key is about new boxes again)
  //   {kind: "next-box", tag}       detection: the label of the boxes drawn from now on
  //   {kind: "set", tags}           multiclass: the image's one tag
  //   {kind: "toggle", tags}        multilabel: the image's tags with this one toggled
  //   null                          no tag has this key
  press(index, currentTags = []) {
    const tag = this.tags[index];
    if (tag === undefined) return null;
    if (this.detection) {
      if (this.relabelBox >= 0) {
        const box = this.relabelBox;
        this.relabelBox = -1;
        return { kind: "relabel", box, tag };
      }
      this.newBoxTag = tag;
      return { kind: "next-box", tag };
    }
    if (this.type === "multiclass") return { kind: "set", tags: [tag] };
    const tags = currentTags.includes(tag) ? currentTags.filter((t) => t !== tag) : [...currentTags, tag];
    return { kind: "toggle", tags };
  }

  // Whether A may accept this suggestion at once; an empty one needs the person's confirmation first.
  acceptsAtOnce(suggestion) {
    return this.type === "multiclass" || !isEmptySuggestion(suggestion);
  }
}
