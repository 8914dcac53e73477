// Zooming, panning and label layout of the box editor, without a browser: node --test tests/js
import assert from "node:assert/strict";
import { test } from "node:test";
import { contrastRatio, placeLabels } from "../../services/annotation/webapp/static/layout.js";
import { fit, MAX_ZOOM, panBy, zoomAt, zoomOf } from "../../services/annotation/webapp/static/viewport.js";

const W = 1000;
const H = 1333;

test("zooming keeps the point under the cursor in place and stays inside the photo", () => {
  const at = { x: 300, y: 400 };
  const view = zoomAt(fit(W, H), 4, at, W, H);
  assert.equal(zoomOf(view, W), 4);
  assert.ok(Math.abs(view.w / view.h - W / H) < 1e-9); // the photo's shape: no letterbox
  // The point was at 30 % across and 30 % down the screen; it still is.
  assert.ok(Math.abs((at.x - view.x) / view.w - 0.3) < 1e-9);
  assert.ok(Math.abs((at.y - view.y) / view.h - 400 / H) < 1e-9);
  const corner = zoomAt(fit(W, H), 2, { x: W, y: H }, W, H);
  assert.deepEqual([corner.x + corner.w, corner.y + corner.h], [W, H]);
});

test("zoom stays between the whole photo and the closest zoom", () => {
  assert.deepEqual(zoomAt(fit(W, H), 0.5, { x: 10, y: 10 }, W, H), fit(W, H));
  let view = fit(W, H);
  for (let i = 0; i < 20; i++) view = zoomAt(view, 2, { x: 500, y: 500 }, W, H);
  assert.equal(zoomOf(view, W), MAX_ZOOM);
});

test("panning moves by fractions of the screen and stops at the photo's edges", () => {
  const view = zoomAt(fit(W, H), 2, { x: 0, y: 0 }, W, H);
  const right = panBy(view, 0.5, 0, W, H);
  assert.equal(right.x, view.w / 2);
  assert.deepEqual(panBy(view, -1, -1, W, H), view); // already at the top left
  const far = panBy(view, 10, 10, W, H);
  assert.deepEqual([far.x + far.w, far.y + far.h], [W, H]);
});

test("label strips that would cover each other move inside or below their box", () => {
  const strips = placeLabels(
    [
      { x1: 10, y1: 50, x2: 60, y2: 150, w: 120, h: 20 },
      { x1: 70, y1: 50, x2: 120, y2: 150, w: 120, h: 20 },
      { x1: 200, y1: 0, x2: 300, y2: 100, w: 60, h: 20 },
      { x1: 350, y1: 180, x2: 400, y2: 200, w: 80, h: 20 },
    ],
    400,
    200,
  );
  // The same places visiondock/drawing.py's place_labels chooses (tests/common/test_drawing.py).
  assert.deepEqual(strips, [
    { x: 10, y: 30 },
    { x: 70, y: 50 },
    { x: 200, y: 0 },
    { x: 320, y: 160 },
  ]);
});

test("contrast ratio as WCAG computes it", () => {
  assert.equal(Math.round(contrastRatio("#ffffff", "#000000")), 21);
  assert.ok(contrastRatio("#000000", "#46f0f0") > 14);
  assert.ok(contrastRatio("#ffffff", "#46f0f0") < 1.5); // white on cyan: what the labels had
});
