// The part of the photo on screen when zoomed: a rectangle {x, y, w, h} in the image's pixels, always of
// the image's shape (no letterbox) and inside it. No DOM: Node's test runner checks it (tests/js).

export const MAX_ZOOM = 16;

export const fit = (width, height) => ({ x: 0, y: 0, w: width, h: height });

export const zoomOf = (view, width) => width / view.w;

function inside(view, width, height) {
  return {
    ...view,
    x: Math.min(Math.max(view.x, 0), width - view.w),
    y: Math.min(Math.max(view.y, 0), height - view.h),
  };
}

// Zoomed by `factor` (> 1 closer) keeping the image point `at` where it is on screen.
export function zoomAt(view, factor, at, width, height) {
  const zoom = Math.min(Math.max(zoomOf(view, width) * factor, 1), MAX_ZOOM);
  const w = width / zoom;
  const h = height / zoom;
  const kept = w / view.w;
  return inside({ x: at.x - (at.x - view.x) * kept, y: at.y - (at.y - view.y) * kept, w, h }, width, height);
}

// Moved by (dx, dy) fractions of what is on screen (1 = a whole screen to the right or down).
export function panBy(view, dx, dy, width, height) {
  return inside({ ...view, x: view.x + dx * view.w, y: view.y + dy * view.h }, width, height);
}
