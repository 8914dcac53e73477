// Where each box's label strip goes so that labels stay readable: the rule of visiondock/drawing.py
// (`place_labels`), which /v1/render draws with. No DOM: Node's test runner checks it (tests/js).

const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

// boxes: [{x1, y1, x2, y2, w, h}] (w, h: the strip's size), in drawing order; width, height: the image's.
// Each strip tries, in order: above the box, inside its top, below it, inside its bottom, its left edge at
// the box's (moved left when it would leave the image). The first place inside the image that covers no
// strip placed before wins; when every place collides, the first inside the image.
// Returns [{x, y}]: each strip's top left corner.
export function placeLabels(boxes, width, height) {
  const placed = [];
  return boxes.map((b) => {
    const x = Math.max(0, Math.min(b.x1, width - b.w));
    const candidates = [b.y1 - b.h, b.y1, b.y2, b.y2 - b.h].map((y) => ({ x, y, w: b.w, h: b.h }));
    const inside = candidates.filter((c) => c.y >= 0 && c.y + c.h <= height);
    const free = inside.find((c) => !placed.some((p) => overlaps(c, p)));
    const chosen = free ?? inside[0] ?? { x, y: Math.max(0, b.y1), w: b.w, h: b.h };
    placed.push(chosen);
    return { x: chosen.x, y: chosen.y };
  });
}

// WCAG 2 contrast of two "#rrggbb" colours (1 to 21).
export function contrastRatio(first, second) {
  const luminance = (hex) => {
    const [r, g, b] = [1, 3, 5].map((i) => {
      const v = Number.parseInt(hex.slice(i, i + 2), 16) / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [light, dark] = [luminance(first), luminance(second)].sort((a, b) => b - a);
  return (light + 0.05) / (dark + 0.05);
}
