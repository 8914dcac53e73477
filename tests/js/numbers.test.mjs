// Honest numbers (visiondock/pages/numbers.js): intervals against SciPy's Wilson interval
// (scipy.stats.binomtest(k, n).proportion_ci(method="wilson")), and the caveats' rules.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  driftNote,
  estimateSource,
  estimates,
  estimateText,
  proportion,
  SMALL_SAMPLE,
  smallSampleNote,
  thresholdNote,
  wilson,
} from "../../visiondock/pages/numbers.js";

const close = (actual, expected) => assert.ok(Math.abs(actual - expected) < 1e-6, `${actual} is not ${expected}`);

test("wilson: the interval SciPy gives, inside 0..1 even at 0 % and 100 %", () => {
  const [low, high] = wilson(11, 12);
  close(low, 0.6461200888588831);
  close(high, 0.985134905595083);
  const [none, upper] = wilson(0, 5);
  close(none, 0);
  close(upper, 0.43448246478317476);
  const [lower, all] = wilson(9, 9);
  close(lower, 0.7008549515804559);
  close(all, 1);
  assert.equal(wilson(3, 0), null);
});

test("a proportion on few images carries n and its interval; on many, n alone", () => {
  const few = proportion(11 / 12, 12, "test images");
  assert.equal(few.text, "0.917 (n = 12 test images; 95 % interval 0.646–0.985)");
  const many = proportion(0.9, 200);
  assert.equal(many.interval, null);
  assert.equal(many.text, "0.900 (n = 200 images)");
  assert.equal(proportion(undefined, 10).text, "–");
  assert.equal(proportion(0.5, undefined).text, "0.500");
});

test("a figure on fewer than 30 images says so; from 30 on it needs no note", () => {
  assert.equal(smallSampleNote(9), "Measured on 9 test images: too few for a stable figure.");
  assert.equal(smallSampleNote(SMALL_SAMPLE), null);
  assert.match(smallSampleNote(undefined), /not stored/);
});

test("a threshold chosen on few validation images is flagged; the trainer's own note wins", () => {
  assert.match(
    thresholdNote({ validation_count: 6, threshold: { chosen_on: "validation" } }),
    /chosen on 6 validation images: too few/,
  );
  assert.equal(thresholdNote({ validation_count: 40 }), null);
  assert.match(thresholdNote({ validation_count: 0 }), /No validation images/);
  assert.match(thresholdNote({ threshold: { chosen_on: "default (no validation images)" } }), /default/);
  assert.equal(
    thresholdNote({ validation_count: 6, threshold_note: "Chosen on 6 images; 0.5 is used." }),
    "Chosen on 6 images; 0.5 is used.",
  );
  // Cross-validation chooses on every image's out-of-fold prediction.
  assert.equal(thresholdNote({ validation_count: 0, evaluation: { method: "cross-validation", images: 45 } }), null);
  assert.equal(thresholdNote({}), null);
});

test("drift from fewer than 100 predictions carries a caveat", () => {
  assert.match(driftNote(33), /From 33 predictions/);
  assert.equal(driftNote(100), null);
});

test("estimates: a classifier's accuracy and a detector's two mAPs, each with its interval and sample size", () => {
  const classifier = estimates({
    estimate: {
      metric: "accuracy",
      value: 0.9812,
      interval: [0.9685, 0.9889],
      images: 720,
      source: "out-of-fold",
      folds: 5,
      repeats: 2,
    },
  });
  assert.equal(classifier.length, 1);
  assert.equal(classifier[0].key, "accuracy");
  assert.equal(estimateText(classifier[0]), "98.1 % (95 % interval 96.9–98.9 %, n = 720 images)");
  assert.equal(estimateSource(classifier[0]), "out-of-fold predictions (2 × 5-fold cross-validation)");
  const detector = estimates({
    estimate: {
      map_50: { value: 0.926, low: 0.88, high: 0.96 },
      map_50_95: { value: 0.599, low: null, high: null },
      image_count: 5,
      box_count: 45,
      source: "test",
    },
  });
  assert.deepEqual(
    detector.map((row) => [row.key, row.interval]),
    [
      ["map_50", [0.88, 0.96]],
      ["map_50_95", null],
    ],
  );
  assert.equal(estimateText(detector[0]), "0.926 (95 % interval 0.880–0.960, n = 5 images with 45 boxes)");
  assert.equal(estimateSource(detector[1]), "held-out test images");
  // As the trainer stores it: a headline in the common shape beside both mAPs; the mAPs are shown, as mAP.
  const stored = estimates({
    estimate: {
      metric: "mAP@0.5",
      value: 0.089,
      interval: [0.072, 0.376],
      images: 4,
      boxes: 3,
      map_50: { value: 0.089, low: 0.072, high: 0.376 },
      map_50_95: { value: 0.02, low: 0.01, high: 0.09 },
      source: "held-out",
      image_count: 4,
      box_count: 3,
    },
  });
  assert.deepEqual(
    stored.map((row) => row.key),
    ["map_50", "map_50_95"],
  );
  assert.equal(estimateText(stored[0]), "0.089 (95 % interval 0.072–0.376, n = 4 images with 3 boxes)");
  assert.deepEqual(estimates({}), []);
  assert.deepEqual(estimates({ estimate: { map_50: { value: null } } }), []);
});
