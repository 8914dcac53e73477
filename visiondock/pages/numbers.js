// Honest numbers: a metric with the number of images (or boxes) it was measured on, a 95 % interval where
// that number is small, and the caveats a person needs before trusting a threshold or a drift score.
// No DOM: Node's test runner checks them (tests/js/numbers.test.mjs).

// Below this many images a measured proportion or a chosen threshold moves a lot from one sample to the next.
export const SMALL_SAMPLE = 30;
const Z95 = 1.959964;

// The Wilson score interval of `successes` out of `n` at 95 %: [low, high], or null without a sample.
// Unlike "p ± 1.96·sqrt(p(1-p)/n)" it stays inside 0..1 and is not zero-wide at 0 % or 100 %.
export function wilson(successes, n, z = Z95) {
  if (!Number.isFinite(n) || n <= 0 || !Number.isFinite(successes)) return null;
  const p = Math.min(Math.max(successes / n, 0), 1);
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

const digits = (value, places = 3) =>
  typeof value === "number" && Number.isFinite(value) ? value.toFixed(places) : "–";

// A proportion measured on `n` items, as the pages show it: its value, n, and under SMALL_SAMPLE items the
// Wilson interval. {value, n, interval: [low, high] | null, text: "0.917 (n = 12; 95 % interval 0.646–0.985)"}
export function proportion(value, n, what = "images") {
  if (typeof value !== "number" || !Number.isFinite(value)) return { value, n, interval: null, text: "–" };
  if (!Number.isFinite(n) || n <= 0) return { value, n: null, interval: null, text: digits(value) };
  const interval = n < SMALL_SAMPLE ? wilson(Math.round(value * n), n) : null;
  const range = interval ? `; 95 % interval ${digits(interval[0])}–${digits(interval[1])}` : "";
  return { value, n, interval, text: `${digits(value)} (n = ${n} ${what}${range})` };
}

// The caveat of a figure that has no interval (mAP, macro F1, AP) measured on `n` images: null from
// SMALL_SAMPLE images on.
export function smallSampleNote(n, what = "test images") {
  if (!Number.isFinite(n)) return "The number of images this was measured on was not stored: read it with care.";
  if (n >= SMALL_SAMPLE) return null;
  return `Measured on ${n} ${what}: too few for a stable figure.`;
}

// How many validation images a version's threshold was chosen on, from what the trainer stored.
function thresholdSample(metrics) {
  if (metrics.evaluation?.method === "cross-validation" && Number.isFinite(metrics.evaluation.images)) {
    return metrics.evaluation.images;
  }
  return Number.isFinite(metrics.validation_count) ? metrics.validation_count : null;
}

// Why a version's threshold deserves caution, in words; null when nothing needs saying. The trainer's own
// note (`threshold_note`) wins; otherwise it is computed from the validation images the threshold was
// chosen on. `task`: a detector's threshold is a score cut-off, a classifier's says "uncertain".
export function thresholdNote(metrics = {}, task = "") {
  const stored = metrics.threshold_note ?? metrics.threshold?.note ?? metrics.threshold_selection?.note;
  if (typeof stored === "string" && stored) return stored;
  const chosenOn = metrics.threshold?.chosen_on ?? "";
  if (chosenOn.startsWith("default")) return `No validation images: the threshold is the default (${chosenOn}).`;
  const n = thresholdSample(metrics);
  if (n === null) return null;
  if (n === 0) return "No validation images: the thresholds are the defaults, not chosen on this project's images.";
  if (n >= SMALL_SAMPLE) return null;
  const effect =
    task === "detection"
      ? "The score cut-off may keep too many or too few boxes on new photos"
      : '"Uncertain" answers may come far too often or too rarely on new photos';
  return (
    `The thresholds were chosen on ${n} validation image${n === 1 ? "" : "s"}: too few to rely on ` +
    `(${SMALL_SAMPLE} or more give a stable choice). ${effect}; label more images and train again.`
  );
}

// The caveat of a drift score (PSI over ten confidence bins) computed from `count` predictions.
export const DRIFT_MIN_PREDICTIONS = 100;
export function driftNote(count) {
  if (!Number.isFinite(count) || count >= DRIFT_MIN_PREDICTIONS) return null;
  return `From ${count} prediction${count === 1 ? "" : "s"}: a PSI from fewer than ${DRIFT_MIN_PREDICTIONS} moves a lot by chance alone.`;
}

// The trainer's estimate on new photos (`metrics.estimate`) as rows the pages show: a classifier's
// accuracy with its 95 % interval from the out-of-fold predictions (or held-out images) and the number of
// images; a detector's mAP@0.5 and mAP@[.5:.95], each with its bootstrap interval over the test images.
// [] when the version stores none. Each row: {key, name, value, interval: [low, high] | null, images,
// boxes?, source}.
const DETECTION_ESTIMATES = [
  ["map_50", "mAP@0.5"],
  ["map_50_95", "mAP@[.5:.95]"],
];
const finite = (value) => typeof value === "number" && Number.isFinite(value);

export function estimates(metrics = {}) {
  const found = metrics.estimate;
  if (!found || typeof found !== "object") return [];
  // A detector's estimate carries both mAPs with their intervals (beside a headline in the common shape).
  if (finite(found.value) && !finite(found.map_50?.value)) {
    const [low, high] = Array.isArray(found.interval) ? found.interval : [];
    return [
      {
        key: found.metric === "accuracy" ? "accuracy" : (found.metric ?? "estimate"),
        name: found.metric ?? "accuracy",
        value: found.value,
        interval: finite(low) && finite(high) ? [low, high] : null,
        images: found.images,
        source: found.source,
        folds: found.folds,
        repeats: found.repeats,
      },
    ];
  }
  return DETECTION_ESTIMATES.filter(([key]) => finite(found[key]?.value)).map(([key, name]) => ({
    key,
    name,
    value: found[key].value,
    interval: finite(found[key].low) && finite(found[key].high) ? [found[key].low, found[key].high] : null,
    images: found.image_count ?? found.images,
    boxes: found.box_count ?? found.boxes,
    source: found.source,
  }));
}

// Where an estimate comes from, in words: "out-of-fold predictions (2 × 5-fold cross-validation)".
export function estimateSource(row) {
  if (row.source === "out-of-fold") {
    const how = finite(row.folds)
      ? ` (${finite(row.repeats) ? `${row.repeats} × ` : ""}${row.folds}-fold cross-validation)`
      : "";
    return `out-of-fold predictions${how}`;
  }
  if (row.source === "held-out" || row.source === "test") return "held-out test images";
  return row.source ?? "";
}

// One line for a list of versions: "97.9 % (95 % interval 96.6–98.7 %, n = 720 images)"; mAP as 0.926.
export function estimateText(row) {
  const asPercent = !row.key.startsWith("map");
  const shown = (v) => (asPercent ? `${(v * 100).toFixed(1)} %` : v.toFixed(3));
  const range = row.interval
    ? `95 % interval ${asPercent ? (row.interval[0] * 100).toFixed(1) : row.interval[0].toFixed(3)}–${shown(row.interval[1])}, `
    : "no interval, ";
  const boxes = finite(row.boxes) ? ` with ${row.boxes} boxes` : "";
  return `${shown(row.value)} (${range}n = ${row.images} images${boxes})`;
}
