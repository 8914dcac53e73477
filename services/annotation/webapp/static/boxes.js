// Boxes on an image: drawn in the product's one style (GET /v1/drawing-style), and edited with the pointer.
// Coordinates inside the SVG are the image's own pixels; regions are stored normalized (0..1).

import { api } from "./api.js";

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

// A label's colour: its place among the project's tags sorted, else the CRC-32 of its name.
export function colourOf(label) {
  const at = labels.indexOf(label);
  const index = at >= 0 ? at : crc32(label);
  return style.palette[index % style.palette.length];
}

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

export class BoxEditor {
  // onChange(regions) after every finished edit; label() names the tag of a newly drawn box.
  constructor(svg, { width, height, onChange, label, onSelect }) {
    this.svg = svg;
    this.width = width;
    this.height = height;
    this.onChange = onChange;
    this.label = label;
    this.onSelect = onSelect || (() => {});
    this.boxes = []; // pixel boxes {tag, x1, y1, x2, y2}
    this.suggested = [];
    this.selected = -1;
    this.drag = null;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.addEventListener("pointerdown", (e) => this.down(e));
    svg.addEventListener("pointermove", (e) => this.move(e));
    svg.addEventListener("pointerup", (e) => this.up(e));
    svg.addEventListener("pointercancel", () => {
      this.drag = null;
      this.render();
    });
  }

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
    if (!this.drag) this.boxes = regions.map(toBox);
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

  point(event) {
    const p = this.svg.createSVGPoint();
    p.x = event.clientX;
    p.y = event.clientY;
    const q = p.matrixTransform(this.svg.getScreenCTM().inverse());
    return { x: clamp(q.x, 0, this.width), y: clamp(q.y, 0, this.height) };
  }

  down(event) {
    if (event.button !== 0) return;
    const p = this.point(event);
    const target = event.target;
    const index = target.dataset.box !== undefined ? Number(target.dataset.box) : -1;
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
      this.drag = { kind: "move", index, dx: p.x - b.x1, dy: p.y - b.y1, w: b.x2 - b.x1, h: b.y2 - b.y1, moved: false };
    } else {
      const tag = this.label();
      if (!tag) return;
      this.boxes.push({ tag, x1: p.x, y1: p.y, x2: p.x, y2: p.y });
      this.selected = this.boxes.length - 1;
      this.drag = { kind: "draw", index: this.selected };
    }
    this.svg.setPointerCapture(event.pointerId);
    event.preventDefault();
  }

  move(event) {
    if (!this.drag) return;
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
    const b = this.boxes[drag.index];
    [b.x1, b.x2] = [Math.min(b.x1, b.x2), Math.max(b.x1, b.x2)];
    [b.y1, b.y2] = [Math.min(b.y1, b.y2), Math.max(b.y1, b.y2)];
    const tiny = Math.min(this.width, this.height) / 100;
    if (drag.kind === "draw" && (b.x2 - b.x1 < tiny || b.y2 - b.y1 < tiny)) {
      this.boxes.splice(drag.index, 1); // a click, not a box: it unselects
      this.select(-1);
      return;
    }
    this.render();
    if (drag.kind !== "move" || drag.moved) this.onChange(this.regions());
    if (drag.kind === "draw") this.onSelect(this.selected, false);
  }

  drawBox(layer, b, { index = -1, dashed = false, selected = false }) {
    const { line, font, pad } = metrics(this.width, this.height);
    const colour = colourOf(b.tag);
    const g = el("g", { class: dashed ? "box suggested" : "box" }, layer);
    const rect = el(
      "rect",
      {
        x: b.x1,
        y: b.y1,
        width: Math.max(b.x2 - b.x1, 1),
        height: Math.max(b.y2 - b.y1, 1),
        fill: selected ? "rgba(255,255,255,0.15)" : "transparent",
        stroke: colour,
        "stroke-width": line,
      },
      g,
    );
    if (dashed)
      rect.setAttribute("stroke-dasharray", style.suggestion.dash_in_line_widths.map((d) => d * line).join(" "));
    if (index >= 0) rect.dataset.box = index;
    const text = b.score !== undefined && b.score !== null ? `${b.tag} ${b.score.toFixed(2)}` : b.tag;
    const tagHeight = font + 2 * pad;
    const above = b.y1 - tagHeight >= 0;
    const ty = above ? b.y1 - tagHeight : b.y1;
    // A label strip is not a handle: a drag that starts on it (it lies over the photo) draws a box.
    const bg = el(
      "rect",
      { x: b.x1, y: ty, height: tagHeight, width: text.length * font * 0.6 + 2 * pad, fill: colour, class: "strip" },
      g,
    );
    if (dashed) bg.setAttribute("opacity", "0.75");
    const label = el(
      "text",
      {
        x: b.x1 + pad,
        y: ty + pad + font * 0.85,
        "font-size": font,
        fill: style.label.text_colour,
        "font-family": "sans-serif",
        class: "strip",
      },
      g,
    );
    label.textContent = text;
    if (selected) {
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

  render() {
    this.svg.replaceChildren();
    const layer = el("g", {}, this.svg);
    for (const b of this.suggested) this.drawBox(layer, b, { dashed: true });
    this.boxes.forEach((b, i) => {
      this.drawBox(layer, b, { index: i, selected: i === this.selected });
    });
  }
}
