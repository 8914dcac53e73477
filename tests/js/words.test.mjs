// What the pages say instead of field names (visiondock/pages/words.js).
import assert from "node:assert/strict";
import { test } from "node:test";
import { metricName, metricUnit, runMetrics, runState } from "../../visiondock/pages/words.js";

test("metric keys become words, and each has one unit", () => {
  assert.equal(metricName("train_ctr"), "centre loss (training)");
  assert.equal(metricName("val_map_50_95"), "validation mAP@[.5:.95]");
  assert.equal(metricName("val_metric", "multiclass"), "validation accuracy");
  assert.equal(metricName("train_metric", "multilabel"), "training micro F1");
  assert.equal(metricName("some_new_thing"), "some new thing");
  assert.deepEqual(
    ["seconds", "data_wait_seconds", "train_loss", "train_ctr", "val_loss", "val_map_50", "train_metric"].map(
      metricUnit,
    ),
    ["seconds", "seconds", "loss", "loss", "loss", "fraction", "fraction"],
  );
});

test("a run's state is a sentence, never `status running stage download`", () => {
  assert.equal(runState({ status: "running", stage: "download" }), "Running: downloading the images");
  assert.equal(
    runState({ status: "running", stage: "train", epoch: 3, epochs: 60 }),
    "Running: training, epoch 3 of 60",
  );
  assert.equal(runState({ status: "succeeded", version: 2 }), "Finished: version 2");
  assert.equal(runState({ status: "failed", error: "too few images" }), "Failed: too few images");
  assert.equal(runState({ status: "queued" }), "Waiting to start");
  assert.equal(runState({ status: "cancelled", error: "cancelled: test over" }), "Cancelled: test over");
  assert.equal(
    runMetrics({ train_loss: 0.41234, val_accuracy: 0.81, seconds: 37.26 }),
    "training loss 0.412 · validation accuracy 0.810 · seconds per epoch 37.3",
  );
});
