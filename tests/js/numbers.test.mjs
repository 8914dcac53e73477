// Honest numbers (visiondock/pages/numbers.js): intervals against SciPy's Wilson interval
// (scipy.stats.binomtest(k, n).proportion_ci(method="wilson")), and the caveats' rules.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  driftNote,
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
