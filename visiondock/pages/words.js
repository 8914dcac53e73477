// What the pages say instead of the stores' field names: metrics, the units they are counted in, and a
// training run's state. No DOM: Node's test runner checks them (tests/js/words.test.mjs).

const METRIC_NAMES = {
  accuracy: "accuracy",
  macro_f1: "macro F1",
  micro_f1: "micro F1",
  mean_ap: "mean AP",
  map_50: "mAP@0.5",
  map_50_95: "mAP@[.5:.95]",
  precision: "precision",
  recall: "recall",
  f1: "F1",
  ap: "AP",
  ap_50: "AP@0.5",
  ap_50_95: "AP@[.5:.95]",
  loss: "loss",
  train_loss: "training loss",
  val_loss: "validation loss",
  train_cls: "class loss (training)",
  train_box: "box loss (training)",
  train_ctr: "centre loss (training)",
  val_cls: "class loss (validation)",
  val_box: "box loss (validation)",
  val_ctr: "centre loss (validation)",
  val_map_50: "validation mAP@0.5",
  val_map_50_95: "validation mAP@[.5:.95]",
  val_accuracy: "validation accuracy",
  seconds: "seconds per epoch",
  data_wait_seconds: "seconds waiting for images",
};

// train_metric / val_metric: accuracy for a classifier, micro F1 at 0.5 for a multilabel model.
function perEpochMetric(task) {
  return task === "multilabel" ? "micro F1" : "accuracy";
}

// A metric's name in words ("validation loss", "mAP@0.5"); an unknown key with its underscores as spaces.
export function metricName(key, task = "") {
  if (key === "train_metric") return `training ${perEpochMetric(task)}`;
  if (key === "val_metric") return `validation ${perEpochMetric(task)}`;
  return METRIC_NAMES[key] ?? key.replaceAll("_", " ");
}

// What a metric is counted in, so that a chart never puts two units on one axis: "seconds", "loss"
// (a loss has no upper bound) or "fraction" (0 to 1: accuracy, AP, F1, ...).
export function metricUnit(key) {
  if (key.endsWith("seconds")) return "seconds";
  if (key.includes("loss") || /_(cls|box|ctr)$/.test(key)) return "loss";
  return "fraction";
}

const STAGES = {
  download: "downloading the images",
  features: "computing image features",
  train: "training",
  evaluate: "measuring it on held-out images",
  refit: "training again on every labeled image",
  export: "exporting the model",
  parity: "checking the exported model",
  quantize: "making the INT8 variant",
  fp16: "making the fp16 variant",
  register: "registering the version",
};

const STATUSES = {
  queued: "Waiting to start",
  running: "Running",
  succeeded: "Finished",
  failed: "Failed",
  cancelled: "Cancelled",
  lost: "Lost: the trainer stopped reporting",
};

// What a stage means ("downloading the images"); an unknown stage as it is.
export const stageWords = (stage) => STAGES[stage] ?? stage ?? "";

// A run's state in one sentence: "Running: training, epoch 3 of 60", "Finished: version 2", "Failed: ...".
export function runState(run) {
  const status = STATUSES[run.status] ?? run.status;
  if (run.status === "running" && run.stage) {
    const epochs =
      ["train", "refit"].includes(run.stage) && run.epochs ? `, epoch ${run.epoch ?? 0} of ${run.epochs}` : "";
    return `${status}: ${stageWords(run.stage)}${epochs}`;
  }
  if (run.status === "succeeded" && run.version) return `${status}: version ${run.version}`;
  if ((run.status === "failed" || run.status === "cancelled") && run.error) {
    // A cancelled run's error already starts "cancelled: <reason>".
    return `${status}: ${run.error.replace(/^cancelled(: )?/i, "") || "no reason given"}`;
  }
  return status;
}

// A run's latest numbers in words: "training loss 0.412 · validation accuracy 0.810".
export function runMetrics(metrics = {}, task = "") {
  return Object.entries(metrics)
    .filter(([key, value]) => typeof value === "number" && key !== "epoch")
    .map(([key, value]) =>
      metricUnit(key) === "seconds"
        ? `${metricName(key, task)} ${value.toFixed(1)}`
        : `${metricName(key, task)} ${value.toFixed(3)}`,
    )
    .join(" · ");
}
