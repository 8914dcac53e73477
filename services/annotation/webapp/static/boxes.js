// The photo and its boxes: drawn in the product's one style (GET /v1/drawing-style), zoomed and panned
// (wheel, keys, middle-button drag), and edited with the pointer in one of two modes: `draw`, where a
// drag always draws a new box (even one starting inside another box) and a click picks a box, and
// `edit`, where a drag moves a box or resizes it by a corner. Coordinates inside the SVG are the image's
// own pixels (the view is the SVG's viewBox); regions are stored normalized (0..1).

import { api } from "./api.js";
import { placeLabels } from "./layout.js";
import { fit, panBy, zoomAt, zoomOf } from "./viewport.js";

const SVG = "http://www.w3.org/2000/svg";
let style = null;
let labels = [];

// The one drawing style of boxes and labels (visiondock.drawing, GET /v1/drawing-style), as /v1/render draws.
export async function loadStyle(tags = []) {
  if (!style) style = await api("/v1/drawing-style");
  labels = [...tags].sort();
  return style;
}

function crc32(text) {
  let crc = 0xffffffff;
  for (const byte of new TextEncoder().encode(text)) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// A label's place in the palette: its place among the project's tags sorted, else the CRC-32 of its name.
function paletteIndex(label) {
  const at = labels.indexOf(label);
  return (at >= 0 ? at : crc32(label)) % style.palette.length;
}

export const colourOf = (label) => style.palette[paletteIndex(label)];
// Black or white, whichever reads better on the label's colour (the style says which, per colour).
export const textColourOf = (label) => style.label.text_colours[paletteIndex(label)];

function metrics(width, height) {
  const line = style.line_width;
  const font = style.font_size;
  return {
    line: Math.max(line.min_px, Math.round(Math.min(width, height) * line.fraction_of_shorter_side)),
    font: Math.floor(Math.min(Math.max(height * font.fraction_of_height, font.min_px), font.max_px)),
    pad: style.label.padding_px,
  };
}

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
const WHEEL_ZOOM = 0.0015; // zoom factor per wheel pixel: exp(-deltaY * WHEEL_ZOOM)

export class BoxEditor {
  // onChange(regions) after every finished edit; label() names the tag of a newly drawn box;
  // onSelect(index, picked) when the selection changes (picked: a person chose the box, not drew it);
  // onView(zoom) after a zoom or pan. editable: false shows the photo only (zoom and pan still work).
  constructor(svg, { width, height, onChange, label, onSelect, onView, editable = true }) {
    this.svg = svg;
    this.width = width;
    this.height = height;
    this.onChange = onChange || (() => {});
    this.label = label || (() => null);
    this.onSelect = onSelect || (() => {});
    this.onView = onView || (() => {});
    this.editable = editable;
    this.boxes = []; // pixel boxes {tag, x1, y1, x2, y2}
    this.suggested = [];
    this.selected = -1;
    this.drag = null;
    this.mode = "draw";
    this.view = fit(width, height);
    this.listening = new AbortController();
    const signal = this.listening.signal;
    svg.replaceChildren();
    this.photo = el("image", { x: 0, y: 0, width, height, preserveAspectRatio: "none" }, svg);
    this.layer = el("g", {}, svg);
    svg.addEventListener("pointerdown", (e) => this.down(e), { signal });
    svg.addEventListener("pointermove", (e) => this.move(e), { signal });
    svg.addEventListener("pointerup", (e) => this.up(e), { signal });
    svg.addEventListener(
      "pointercancel",
      () => {
        this.drag = null;
        this.render();
      },
      { signal },
    );
    svg.addEventListener("wheel", (e) => this.wheel(e), { signal, passive: false });
    svg.dataset.mode = this.mode;
    this.applyView();
  }

  // No more events: the next image gets an editor of its own.
  destroy() {
    this.listening.abort();
  }

  showPhoto(url) {
    delete this.svg.dataset.photo;
    return new Promise((resolve) => {
      const done = () => {
        this.svg.dataset.photo = "loaded";
        resolve();
      };
      this.photo.addEventListener("load", done, { once: true });
      this.photo.addEventListener("error", done, { once: true });
      this.photo.setAttribute("href", url);
    });
  }

  setMode(mode) {
    this.mode = mode;
    this.svg.dataset.mode = mode;
    this.render();
  }

  // -- the view ---------------------------------------------------------------------------
  get zoom() {
    return zoomOf(this.view, this.width);
  }

  applyView() {
    const { x, y, w, h } = this.view;
    this.svg.setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
    this.render();
    this.onView(this.zoom);
  }

  zoomBy(factor, at = { x: this.view.x + this.view.w / 2, y: this.view.y + this.view.h / 2 }) {
    this.view = zoomAt(this.view, factor, at, this.width, this.height);
    this.applyView();
  }

  panBy(dx, dy) {
    this.view = panBy(this.view, dx, dy, this.width, this.height);
    this.applyView();
  }

  fitView() {
    this.view = fit(this.width, this.height);
    this.applyView();
  }

  wheel(event) {
    event.preventDefault();
    if (event.shiftKey) {
      // Shift + wheel pans (sideways with a horizontal wheel or trackpad).
      const rect = this.svg.getBoundingClientRect();
      this.panBy((event.deltaX || 0) / rect.width, event.deltaY / rect.height);
      return;
    }
    this.zoomBy(Math.exp(-event.deltaY * WHEEL_ZOOM), this.point(event, false));
  }

  // -- regions ----------------------------------------------------------------------------
  setRegions(regions, suggested = []) {
    const toBox = (r) => ({
      tag: r.tag,
      score: r.score,
      x1: r.left * this.width,
      y1: r.top * this.height,
      x2: (r.left + r.width) * this.width,
      y2: (r.top + r.height) * this.height,
    });
    this.suggested = suggested.map(toBox);
    // A box being drawn, moved or resized is newer than any saved regions; its own save follows on release.
    if (!this.drag || this.drag.kind === "pan") this.boxes = regions.map(toBox);
    if (this.selected >= this.boxes.length) this.selected = -1;
    this.render();
  }

  regions() {
    return this.boxes.map((b) => {
      const left = clamp(Math.min(b.x1, b.x2) / this.width, 0, 1);
      const top = clamp(Math.min(b.y1, b.y2) / this.height, 0, 1);
      return {
        tag: b.tag,
        left,
        top,
        width: Math.min(Math.abs(b.x2 - b.x1) / this.width, 1 - left),
        height: Math.min(Math.abs(b.y2 - b.y1) / this.height, 1 - top),
      };
    });
  }

  // picked: a person chose this box (clicked it, or in the list), as opposed to having just drawn it.
  select(index, picked = true) {
    this.selected = index;
    this.render();
    this.onSelect(index, picked && index >= 0);
  }

  removeSelected() {
    if (this.selected < 0) return false;
    this.boxes.splice(this.selected, 1);
    this.select(-1);
    this.onChange(this.regions());
    return true;
  }

  relabel(index, tag) {
    if (!this.boxes[index]) return false;
    this.boxes[index].tag = tag;
    this.render();
    this.onChange(this.regions());
    return true;
  }

  // The smallest box under an image point: the one a click means when boxes overlap.
  boxAt(p) {
    let best = -1;
    let bestArea = Number.POSITIVE_INFINITY;
    this.boxes.forEach((b, i) => {
      const area = (b.x2 - b.x1) * (b.y2 - b.y1);
      if (p.x >= b.x1 && p.x <= b.x2 && p.y >= b.y1 && p.y <= b.y2 && area < bestArea) {
        best = i;
        bestArea = area;
      }
    });
    return best;
  }

  // -- the pointer ------------------------------------------------------------------------
  point(event, inImage = true) {
    const p = this.svg.createSVGPoint();
    p.x = event.clientX;
    p.y = event.clientY;
    const q = p.matrixTransform(this.svg.getScreenCTM().inverse());
    return inImage ? { x: clamp(q.x, 0, this.width), y: clamp(q.y, 0, this.height) } : { x: q.x, y: q.y };
  }

  down(event) {
    if (event.button === 1) {
      // The middle button pans.
      this.drag = { kind: "pan", clientX: event.clientX, clientY: event.clientY, view: { ...this.view } };
    } else if (event.button !== 0 || !this.editable) {
      return;
    } else {
      const p = this.point(event);
      const target = event.target;
      const index = this.mode === "edit" && target.dataset.box !== undefined ? Number(target.dataset.box) : -1;
      if (target.dataset.handle !== undefined && index >= 0) {
        const b = this.boxes[index];
        const corner = target.dataset.handle; // the dragged corner moves, the opposite one stays
        this.drag = {
          kind: "resize",
          index,
          fixX: corner.includes("l") ? b.x2 : b.x1,
          fixY: corner.includes("t") ? b.y2 : b.y1,
        };
      } else if (index >= 0) {
        this.select(index);
        const b = this.boxes[index];
        this.drag = {
          kind: "move",
          index,
          dx: p.x - b.x1,
          dy: p.y - b.y1,
          w: b.x2 - b.x1,
          h: b.y2 - b.y1,
          moved: false,
        };
      } else {
        // Draw mode, or edit mode off every box: a new box.
        const tag = this.label();
        if (!tag) return;
        this.boxes.push({ tag, x1: p.x, y1: p.y, x2: p.x, y2: p.y });
        this.drag = { kind: "draw", index: this.boxes.length - 1, at: p };
        this.selected = this.drag.index;
      }
    }
    this.svg.setPointerCapture(event.pointerId);
    event.preventDefault();
  }

  move(event) {
    if (!this.drag) return;
    if (this.drag.kind === "pan") {
      const rect = this.svg.getBoundingClientRect();
      const dx = (this.drag.clientX - event.clientX) / rect.width;
      const dy = (this.drag.clientY - event.clientY) / rect.height;
      this.view = panBy(this.drag.view, dx, dy, this.width, this.height);
      this.applyView();
      return;
    }
    const p = this.point(event);
    const b = this.boxes[this.drag.index];
    if (this.drag.kind === "move") {
      const x1 = clamp(p.x - this.drag.dx, 0, this.width - this.drag.w);
      const y1 = clamp(p.y - this.drag.dy, 0, this.height - this.drag.h);
      Object.assign(b, { x1, y1, x2: x1 + this.drag.w, y2: y1 + this.drag.h });
      this.drag.moved = true;
    } else if (this.drag.kind === "resize") {
      Object.assign(b, {
        x1: Math.min(this.drag.fixX, p.x),
        x2: Math.max(this.drag.fixX, p.x),
        y1: Math.min(this.drag.fixY, p.y),
        y2: Math.max(this.drag.fixY, p.y),
      });
    } else {
      b.x2 = p.x;
      b.y2 = p.y;
    }
    this.render();
  }

  up() {
    if (!this.drag) return;
    const drag = this.drag;
    this.drag = null;
    if (drag.kind === "pan") return;
    const b = this.boxes[drag.index];
    [b.x1, b.x2] = [Math.min(b.x1, b.x2), Math.max(b.x1, b.x2)];
    [b.y1, b.y2] = [Math.min(b.y1, b.y2), Math.max(b.y1, b.y2)];
    // Smaller than 1 % of the photo's shorter side, or 4 screen pixels when zoomed: a click, not a box.
    const tiny = Math.min(Math.min(this.width, this.height) / 100, (4 * this.view.w) / this.svg.clientWidth);
    if (drag.kind === "draw" && (b.x2 - b.x1 < tiny || b.y2 - b.y1 < tiny)) {
      this.boxes.splice(drag.index, 1);
      // A click picks the box under it (the smallest, where boxes overlap), or unselects.
      this.select(this.boxAt(drag.at), true);
      return;
    }
    this.render();
    if (drag.kind !== "move" || drag.moved) this.onChange(this.regions());
    if (drag.kind === "draw") this.onSelect(this.selected, false);
  }

  // -- drawing ----------------------------------------------------------------------------
  render() {
    const zoom = this.zoom;
    const base = metrics(this.width, this.height);
    // Lines and labels keep their size on screen when zoomed: thin lines over the detail looked at.
    const line = base.line / zoom;
    const font = base.font / zoom;
    const pad = base.pad / zoom;
    this.layer.replaceChildren();
    const outlines = el("g", {}, this.layer);
    const strips = el("g", { class: "strips" }, this.layer);
    const shown = [
      ...this.suggested.map((b) => ({ b, dashed: true, index: -1 })),
      ...this.boxes.map((b, index) => ({ b, dashed: false, index })),
    ];
    const texts = shown.map(({ b, dashed, index }) => {
      const colour = colourOf(b.tag);
      const selected = index >= 0 && index === this.selected;
      const g = el("g", { class: dashed ? "box suggested" : selected ? "box selected" : "box" }, outlines);
      const rect = el(
        "rect",
        {
          x: b.x1,
          y: b.y1,
          width: Math.max(b.x2 - b.x1, 1 / zoom),
          height: Math.max(b.y2 - b.y1, 1 / zoom),
          fill: selected ? "rgba(255,255,255,0.15)" : "transparent",
          stroke: colour,
          "stroke-width": selected ? line * 1.5 : line,
        },
        g,
      );
      if (dashed)
        rect.setAttribute("stroke-dasharray", style.suggestion.dash_in_line_widths.map((d) => d * line).join(" "));
      if (index >= 0) rect.dataset.box = index;
      if (selected && this.mode === "edit") this.drawHandles(g, b, index, line, colour);
      const text = b.score !== undefined && b.score !== null ? `${b.tag} ${b.score.toFixed(2)}` : b.tag;
      const label = el(
        "text",
        { "font-size": font, fill: textColourOf(b.tag), "font-family": "sans-serif", class: "strip" },
        strips,
      );
      label.textContent = text;
      return { b, dashed, colour, label };
    });
    // Strips sized by their text as rendered, placed so that none covers another (layout.js).
    const sizes = texts.map(({ label }) => ({ w: label.getComputedTextLength() + 2 * pad, h: font + 2 * pad }));
    const places = placeLabels(
      texts.map(({ b }, i) => ({ x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2, ...sizes[i] })),
      this.width,
      this.height,
    );
    texts.forEach(({ colour, label }, i) => {
      const { x, y } = places[i];
      const strip = el("rect", { x, y, width: sizes[i].w, height: sizes[i].h, fill: colour, class: "strip" });
      strips.insertBefore(strip, label);
      label.setAttribute("x", x + pad);
      label.setAttribute("y", y + pad + font * 0.85);
    });
  }

  drawHandles(g, b, index, line, colour) {
    const size = line * 4;
    for (const [name, x, y] of [
      ["tl", b.x1, b.y1],
      ["tr", b.x2, b.y1],
      ["bl", b.x1, b.y2],
      ["br", b.x2, b.y2],
    ]) {
      const handle = el(
        "rect",
        {
          x: x - size / 2,
          y: y - size / 2,
          width: size,
          height: size,
          fill: "#fff",
          stroke: colour,
          "stroke-width": line / 2,
          class: `handle ${name}`,
        },
        g,
      );
      handle.dataset.box = index;
      handle.dataset.handle = name;
    }
  }
}
