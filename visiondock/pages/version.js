// A version's page: its headline figures with their sample sizes, PR curves, per-class figures, the
// confusion matrix (classifiers) or the errors per class (detectors), training curves one unit per chart,
// thresholds, the settings that apply to its task, and the data it learned from.
import { barChart, format, lineChart } from "./charts.js";
import { h, percent, when } from "./common.js";
import { estimateSource, estimates, proportion, SMALL_SAMPLE, smallSampleNote, thresholdNote } from "./numbers.js";
import { card, DETECTION, modelPath, scroll, table, testImages, versionHash, versionHeader } from "./parts.js";
import { metricName, metricUnit } from "./words.js";

// -- headline figures ------------------------------------------------------------------------------
const HEADLINE = {
  classification: [
    ["accuracy", "accuracy", "proportion"],
    ["macro_f1", "macro F1"],
    ["micro_f1", "micro F1"],
    ["mean_ap", "mean AP"],
  ],
  detection: [
    ["map_50", "mAP@0.5"],
    ["map_50_95", "mAP@[.5:.95]"],
    ["precision", "precision at the served threshold", "images-boxes"],
    ["recall", "recall at the served threshold", "boxes"],
  ],
};

// The trainer's estimate on new photos, first: its value, 95 % interval, the images (and boxes) it rests on
// and where it comes from.
function estimateBlock(version) {
  const rows = estimates(version.metrics || {});
  if (!rows.length) return null;
  const asPercent = (row) => !row.key.startsWith("map");
  const shown = (row, value) => (asPercent(row) ? percent(value) : format(value));
  return h(
    "div",
    { class: "estimate", id: "estimate" },
    h("h3", {}, "Expected on new photos"),
    h(
      "div",
      { class: "metrics" },
      rows.map((row) =>
        h(
          "div",
          { class: "metric", dataset: { estimate: row.key, value: row.value } },
          h("div", { class: "value" }, shown(row, row.value)),
          h("div", { class: "name" }, `${row.name}, expected on new photos`),
          h(
            "div",
            { class: "sample" },
            h(
              "span",
              { class: "interval" },
              row.interval
                ? `95 % interval ${shown(row, row.interval[0])}–${shown(row, row.interval[1])}`
                : "no interval (too few images)",
            ),
            ` · n = ${row.images} images${Number.isFinite(row.boxes) ? ` with ${row.boxes} boxes` : ""}`,
          ),
        ),
      ),
    ),
    h("p", { class: "muted small" }, `From ${estimateSource(rows[0])}.`),
  );
}

function headline(version) {
  const metrics = version.metrics || {};
  const detection = version.task === DETECTION;
  const n = testImages(metrics);
  const estimated = estimates(metrics);
  const rows = HEADLINE[detection ? "detection" : "classification"].filter(([key]) => typeof metrics[key] === "number");
  const sample = (kind) => {
    if (kind === "proportion") return proportion(metrics.accuracy, n, "test images");
    if (kind === "boxes") return proportion(metrics.recall, metrics.box_count, "boxes");
    return null;
  };
  const items = rows.map(([key, name, kind]) => {
    const shown = sample(kind);
    // The estimate's interval belongs to this figure only when both are the same measurement.
    const same = estimated.find((row) => row.key === key && Math.abs(row.value - metrics[key]) < 1e-4);
    const interval = same?.interval ?? shown?.interval;
    const size =
      kind === "boxes"
        ? `n = ${metrics.box_count} boxes`
        : kind === "images-boxes"
          ? `n = ${n} test images with ${metrics.box_count} true boxes`
          : Number.isFinite(n)
            ? `n = ${n} test images`
            : "n not stored";
    return h(
      "div",
      { class: "metric", dataset: { metric: key, value: metrics[key] } },
      h("div", { class: "value" }, format(metrics[key])),
      h("div", { class: "name" }, name),
      h(
        "div",
        { class: "sample" },
        size,
        interval
          ? h("span", { class: "interval" }, ` · 95 % interval ${format(interval[0])}–${format(interval[1])}`)
          : null,
      ),
    );
  });
  const caveat = smallSampleNote(n);
  const mapInterval = estimated.some((row) => row.key === "map_50" && row.interval);
  return h(
    "div",
    {},
    estimateBlock(version),
    h("div", { class: "metrics" }, items),
    caveat
      ? h(
          "p",
          { class: "caveat", id: "sample-caveat" },
          caveat,
          detection && !mapInterval
            ? " No interval is stored for mAP: read it as a rough figure."
            : " The 95 % intervals above say how far off it may be.",
        )
      : null,
  );
}

// Precision holds until recall reaches the next point: PR curves are drawn as steps, not slopes.
function steps(points) {
  return points.flatMap((point, i) => (i ? [[point[0], points[i - 1][1]], point] : [point]));
}

function prCurves(version) {
  const metrics = version.metrics || {};
  const curves = metrics.pr_curves || {};
  const detection = version.task === DETECTION;
  const series = Object.entries(curves)
    .filter(([, c]) => c.recall?.length)
    .map(([label, curve]) => {
      const row = metrics.per_class?.[label] || {};
      const ap = detection ? (row.ap_50 ?? row.ap) : row.ap;
      return {
        name: label,
        value: ap,
        legend: `${label} (${detection ? "AP@0.5" : "AP"} ${format(ap)})`,
        points: steps(curve.recall.map((r, i) => [r, curve.precision[i]]).sort((a, b) => a[0] - b[0])),
      };
    });
  if (series.length) {
    return [
      detection ? h("p", { class: "muted" }, "Boxes matched at IoU 0.5, ranked by score.") : null,
      lineChart({ series, xDomain: [0, 1], yDomain: [0, 1], xLabel: "recall", yLabel: "precision" }),
    ];
  }
  return h(
    "p",
    { class: "muted", id: "pr-curves-missing" },
    detection
      ? "The trainer stored no per-class precision–recall curves for this version; the table beside gives each class's AP."
      : "No PR curves for this version.",
  );
}

// Per class: the figures and, for proportions on few images, their interval under the value.
const PER_CLASS = {
  classification: [
    ["precision", "precision", "predicted"],
    ["recall", "recall", "support"],
    ["f1", "F1"],
    ["ap", "AP"],
  ],
  detection: [
    ["ap_50", "AP@0.5"],
    ["ap_50_95", "AP@[.5:.95]"],
    ["precision", "precision"],
    ["recall", "recall", "box_count"],
  ],
};

// How many images the model predicted as each class (a column of the confusion matrix).
function predictedCounts(metrics) {
  const matrix = metrics.confusion_matrix;
  if (!matrix) return {};
  return Object.fromEntries(
    matrix.labels.map((label, j) => [label, matrix.matrix.reduce((sum, row) => sum + row[j], 0)]),
  );
}

function perClassTable(version) {
  const metrics = version.metrics || {};
  const detection = version.task === DETECTION;
  const columns = PER_CLASS[detection ? "detection" : "classification"];
  const predicted = predictedCounts(metrics);
  const countKey = detection ? "box_count" : "support";
  const countName = detection ? "boxes" : "images";
  const cell = (label, row, [key, , sampleOf]) => {
    const n = sampleOf === "predicted" ? predicted[label] : sampleOf ? row[sampleOf] : undefined;
    const shown = sampleOf ? proportion(row[key], n) : null;
    return h(
      "td",
      { class: "num", dataset: { metric: key, value: row[key] ?? "" }, title: shown?.text ?? "" },
      format(row[key]),
      shown?.interval
        ? h("small", { class: "interval" }, `${format(shown.interval[0], 2)}–${format(shown.interval[1], 2)}`)
        : null,
    );
  };
  return [
    table(
      [
        "class",
        ...columns.map(([, label]) => ({ label, numeric: true })),
        { label: detection ? "boxes (n)" : "images (n)", numeric: true },
      ],
      Object.entries(metrics.per_class || {}).map(([label, row]) =>
        h(
          "tr",
          { dataset: { class: label } },
          h("td", {}, label),
          columns.map((column) => cell(label, row, column)),
          h("td", { class: "num", dataset: { metric: countKey, value: row[countKey] ?? "" } }, row[countKey] ?? "–"),
        ),
      ),
      { id: "per-class" },
    ),
    h(
      "p",
      { class: "muted small" },
      `Under a precision or recall: its 95 % interval where it was measured on fewer than ${SMALL_SAMPLE} ${countName}.`,
    ),
  ];
}

function perClassChart(version) {
  const metrics = version.metrics || {};
  const perClass = metrics.per_class || {};
  const labels = Object.keys(perClass);
  const columns = PER_CLASS[version.task === DETECTION ? "detection" : "classification"];
  return barChart({
    categories: labels,
    yDomain: [0, 1],
    yLabel: "0 to 1",
    series: columns.map(([key, name]) => ({
      name: key,
      legend: name,
      values: labels.map((label) => perClass[label][key]),
    })),
  });
}

function confusion(metrics) {
  const matrix = metrics.confusion_matrix;
  if (!matrix) return h("p", { class: "muted" }, "No confusion matrix (not a single-label task).");
  const biggest = Math.max(1, ...matrix.matrix.flat());
  return scroll(
    h(
      "table",
      { class: "confusion", id: "confusion" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "true ↓ / predicted →"),
          matrix.labels.map((l) => h("th", { scope: "col" }, l)),
        ),
      ),
      h(
        "tbody",
        {},
        matrix.matrix.map((row, i) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, matrix.labels[i]),
            row.map((count, j) =>
              h(
                "td",
                {
                  dataset: { true: matrix.labels[i], predicted: matrix.labels[j], value: count },
                  style: `background: rgba(${i === j ? "47,111,221" : "180,35,24"}, ${(count / biggest) * 0.75}); color: ${count / biggest > 0.5 ? "#fff" : "inherit"}`,
                },
                count,
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

// Detection's errors per class (the trainer's `metrics.errors.per_class`, at the served score threshold):
// true boxes missed, found in the wrong place, found with the wrong class, and boxes found where there is
// nothing.
const ERROR_KINDS = [
  ["missed", "missed"],
  ["mislocated", "mislocated"],
  ["wrong_class", "wrong class"],
  ["background", "background"],
];

function errorBreakdown(metrics) {
  const stored = metrics.errors;
  const errors = stored?.per_class;
  if (!errors || typeof errors !== "object" || !Object.keys(errors).length) {
    return h(
      "p",
      { class: "muted", id: "errors-missing" },
      "The trainer stored no per-class error breakdown (missed, mislocated, wrong class, background) for this version.",
    );
  }
  const labels = Object.keys(errors);
  return h(
    "div",
    { id: "errors" },
    h(
      "p",
      { class: "muted" },
      "Missed: a true box nothing found. Mislocated: found with the right class but overlapping too little. " +
        "Wrong class: found in the right place with another class. Background: a box where there is nothing." +
        (typeof stored.score_threshold === "number"
          ? ` Counted for the boxes served (score ≥ ${format(stored.score_threshold, 2)})` +
            (Number.isFinite(stored.image_count) ? ` on ${stored.image_count} test images.` : ".")
          : ""),
    ),
    barChart({
      categories: labels,
      yLabel: "boxes",
      series: ERROR_KINDS.map(([key, name]) => ({
        name: key,
        legend: name,
        values: labels.map((l) => errors[l][key]),
      })),
    }),
    table(
      ["class", ...ERROR_KINDS.map(([, name]) => ({ label: name, numeric: true })), { label: "boxes", numeric: true }],
      labels.map((label) =>
        h(
          "tr",
          { dataset: { class: label } },
          h("td", {}, label),
          ERROR_KINDS.map(([key]) =>
            h(
              "td",
              { class: "num", dataset: { error: key, value: errors[label][key] ?? "" } },
              errors[label][key] ?? "–",
            ),
          ),
          h("td", { class: "num", dataset: { error: "boxes" } }, errors[label].boxes ?? "–"),
        ),
      ),
      { id: "error-table" },
    ),
  );
}

// One chart per unit: losses, figures between 0 and 1, seconds; never two units on one axis.
const UNITS = [
  ["loss", "loss"],
  ["fraction", "0 to 1"],
  ["seconds", "seconds"],
];

function trainingCurves(version) {
  const metrics = version.metrics || {};
  const history = metrics.history || [];
  if (!history.length) return h("p", { class: "muted" }, "No per-epoch history.");
  const keys = [...new Set(history.flatMap((row) => Object.keys(row)))].filter(
    (k) => k !== "epoch" && history.some((row) => typeof row[k] === "number"),
  );
  const chart = (names, unit, label) =>
    h(
      "div",
      { class: "curves", dataset: { unit } },
      lineChart({
        dots: true,
        xIntegers: true,
        xLabel: "epoch",
        yLabel: label,
        yDomain: unit === "fraction" ? [0, 1] : undefined,
        series: names.map((name) => {
          const last = history.findLast((row) => typeof row[name] === "number")?.[name];
          return {
            name,
            dashed: name.startsWith("val"),
            value: last,
            legend: `${metricName(name, version.task)} (last ${unit === "seconds" ? format(last, 1) : format(last)})`,
            points: history.filter((row) => typeof row[name] === "number").map((row) => [row.epoch, row[name]]),
          };
        }),
      }),
    );
  return h(
    "div",
    { id: "training-curves" },
    UNITS.map(([unit, label]) => {
      const names = keys.filter((k) => metricUnit(k) === unit);
      return names.length ? chart(names, unit, label) : null;
    }),
  );
}

function thresholds(version) {
  const metrics = version.metrics || {};
  const chosen = metrics.thresholds || {};
  const detection = version.task === DETECTION;
  const names = {
    score: "score threshold: boxes scoring less are not answered",
    nms_iou: "overlap (IoU) above which the weaker of two boxes is dropped",
    uncertain: "uncertain below this probability",
    unknown: "unknown below this probability",
  };
  const rows = Object.entries(chosen).map(([name, value]) =>
    h(
      "tr",
      { dataset: { threshold: name } },
      h("td", {}, names[name] ?? name),
      h("td", { class: "num" }, format(value, 4)),
    ),
  );
  const report = metrics.threshold;
  if (report && typeof report === "object") {
    const chosenOn =
      report.chosen_on === "validation"
        ? `${metrics.validation_count ?? "?"} validation images`
        : Number.isFinite(report.images) && !report.chosen_on?.startsWith("default")
          ? `${report.chosen_on} of ${report.images} images`
          : report.chosen_on;
    const extra = [
      ["chosen on", chosenOn],
      ["for a precision of", typeof report.target_precision === "number" ? format(report.target_precision, 2) : null],
      ["test answers it keeps", typeof report.coverage === "number" ? format(report.coverage) : null],
      [
        "precision of the kept answers",
        typeof report.precision_kept === "number" ? format(report.precision_kept) : null,
      ],
    ].filter(([, value]) => value !== null && value !== undefined);
    rows.push(
      ...extra.map(([name, value]) => h("tr", {}, h("td", {}, name), h("td", { class: "num" }, String(value)))),
    );
  } else if (detection && Number.isFinite(metrics.validation_count)) {
    rows.push(
      h("tr", {}, h("td", {}, "chosen on"), h("td", { class: "num" }, `${metrics.validation_count} validation images`)),
    );
  }
  const note = thresholdNote(metrics, version.task);
  return [
    note ? h("p", { class: "caveat", id: "threshold-note" }, note) : null,
    rows.length
      ? table(["threshold", { label: "value", numeric: true }], rows, { id: "thresholds" })
      : h("p", { class: "muted" }, "No thresholds."),
  ];
}

function dataPanel(version, lineage) {
  const splits = Object.fromEntries(Object.entries(version.splits || {}).map(([part, ids]) => [part, ids.length]));
  const dataset = lineage?.dataset;
  const tagCounts = dataset?.tag_counts || {};
  const tags = Object.keys(tagCounts);
  return h(
    "div",
    { id: "data" },
    table(
      ["split", { label: "images", numeric: true }],
      Object.entries(splits).map(([part, count]) =>
        h("tr", { dataset: { split: part } }, h("td", {}, part), h("td", { class: "num" }, count)),
      ),
      { id: "splits" },
    ),
    tags.length
      ? barChart({
          categories: tags,
          height: 200,
          series: [{ name: "images", values: tags.map((t) => tagCounts[t]) }],
          yLabel: "images",
        })
      : null,
    dataset
      ? h(
          "p",
          {},
          `Snapshot: ${dataset.image_count} images, content hash `,
          h("span", { class: "hash", id: "content-hash" }, dataset.content_hash),
        )
      : h("p", { class: "muted" }, "Registered without lineage."),
    lineage
      ? h(
          "p",
          { class: "muted" },
          `Code ${lineage.code?.version ?? "?"} ${lineage.code?.git_commit ? `(${lineage.code.git_commit.slice(0, 12)})` : ""}; `,
          lineage.parent_version
            ? h("a", { href: versionHash(version.model, lineage.parent_version) }, `parent v${lineage.parent_version}`)
            : "no parent",
          lineage.changes_from_parent
            ? ` — ${lineage.changes_from_parent.images_added} images added, ${lineage.changes_from_parent.images_removed} removed, ${lineage.changes_from_parent.images_relabeled} relabeled`
            : "",
        )
      : null,
  );
}

function variantWords(checked) {
  if (!checked) return "not tried";
  if (checked.registered) return "registered";
  if (checked.error) return `not made (${checked.error})`;
  return "refused (answers differ from fp32)";
}

function evaluationWords(metrics) {
  const evaluation = metrics.evaluation;
  if (evaluation?.method === "cross-validation")
    return `cross-validation: ${evaluation.folds} folds over ${evaluation.images} images`;
  const n = testImages(metrics);
  return Number.isFinite(n) ? `${n} held-out test images` : undefined;
}

// The settings that apply to the version's task: a detector has no classification head, a classifier no
// input size or score threshold.
function settingRows(version) {
  const params = version.params || {};
  const metrics = version.metrics || {};
  const refit = metrics.refit ? `on all ${metrics.refit.images} labeled images` : "no (the evaluated model)";
  const common = [
    ["metrics from", evaluationWords(metrics)],
    ["fitted again", refit],
    ["INT8 variant (CPUs)", variantWords(metrics.int8)],
    ["fp16 variant (GPUs)", variantWords(metrics.fp16)],
  ];
  if (version.task === DETECTION) {
    const epochs = params.epochs_run ? `${params.epochs_run} of ${params.epochs ?? "?"}` : params.epochs;
    return [
      ["detector", params.architecture],
      ["backbone", params.backbone],
      ["mode", params.mode],
      ["input size (pixels)", params.input_size],
      ["epochs", epochs],
      ["best epoch (validation)", params.best_epoch],
      ["batch size", params.batch_size],
      ["learning rate", params.learning_rate],
      ["training time (seconds)", typeof params.seconds === "number" ? format(params.seconds, 0) : undefined],
      ["trained on", params.device],
      ...common,
    ];
  }
  return [
    ["backbone", params.backbone],
    ["head", params.head],
    ["mode", params.mode],
    ["weight decay", params.weight_decay],
    ...common,
  ];
}

function setupPanel(version) {
  const rows = settingRows(version)
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([name, value]) => h("tr", { dataset: { setting: name } }, h("td", {}, name), h("td", {}, String(value))));
  const selection = version.params?.selection;
  let chosen = null;
  if (version.task !== DETECTION && selection?.candidates) {
    // Chosen by repeated cross-validation: the cheapest candidate within one standard error of the best.
    chosen = h(
      "div",
      {},
      h(
        "p",
        {},
        `Chosen by ${selection.repeats} × ${selection.folds}-fold cross-validation on ${selection.images} images: ${selection.rule}.`,
      ),
      table(
        [
          "candidate",
          { label: "cost", numeric: true },
          { label: `${selection.metric} ± SE`, numeric: true },
          { label: "fold spread", numeric: true },
          "",
        ],
        [...selection.candidates]
          .sort((a, b) => b.score - a.score)
          .map((c) =>
            h(
              "tr",
              { class: c.chosen ? "chosen" : "", dataset: { name: c.name, chosen: String(c.chosen) } },
              h("td", {}, c.name),
              h("td", { class: "num" }, format(c.cost, 2)),
              h("td", { class: "num" }, `${percent(c.score)} ± ${percent(c.standard_error)}`),
              h("td", { class: "num" }, percent(c.spread)),
              h("td", {}, c.chosen ? "chosen" : c.name === selection.best ? "best" : ""),
            ),
          ),
        { id: "selection" },
      ),
      (selection.notes || []).map((note) => h("p", { class: "muted small" }, note)),
    );
  } else if (version.task !== DETECTION && selection?.tried) {
    const estimates = Object.entries(selection.estimated_feature_s || {}).map(
      ([name, s]) => `${name} ${format(s, 1)} s`,
    );
    chosen = h(
      "div",
      {},
      h(
        "p",
        {},
        `Chosen by the lowest loss on ${selection.validation_images} validation images` +
          (selection.budget_s !== undefined
            ? `; backbones tried within a ${format(selection.budget_s, 0)} s budget (features estimated: ${estimates.join(", ")})`
            : "") +
          ".",
      ),
      table(
        [
          "backbone",
          "head",
          { label: "validation loss", numeric: true },
          { label: "validation accuracy", numeric: true },
          "",
        ],
        selection.tried.map((t) => {
          const won = t.backbone === selection.backbone && t.head === selection.head;
          return h(
            "tr",
            { class: won ? "chosen" : "", dataset: { backbone: t.backbone, head: t.head, chosen: String(won) } },
            h("td", {}, t.backbone),
            h("td", {}, t.head),
            h("td", { class: "num" }, format(t.val_loss, 4)),
            h("td", { class: "num" }, format(t.val_metric)),
            h("td", {}, won ? "chosen" : ""),
          );
        }),
        { id: "selection" },
      ),
    );
  } else if (selection?.skipped) {
    chosen = h("p", { class: "muted", id: "selection-skipped" }, `Nothing was chosen: ${selection.skipped}.`);
  }
  return h("div", { id: "setup" }, table(["setting", "value"], rows, { id: "settings" }), chosen);
}

export async function versionView(host, model, number) {
  const version = await host.registry(`${modelPath(model)}/versions/${number}`);
  let lineage = null;
  try {
    lineage = await host.registry(`${modelPath(model)}/versions/${number}/lineage`);
  } catch (error) {
    if (error.status !== 404) throw error;
  }
  const metrics = version.metrics || {};
  const detection = version.task === DETECTION;
  const counts = [
    Number.isFinite(metrics.train_count) ? `trained on ${metrics.train_count} images` : null,
    metrics.validation_count > 0 ? `validated on ${metrics.validation_count}` : null, // none when cross-validated
    Number.isFinite(testImages(metrics)) ? `tested on ${testImages(metrics)}` : null,
  ].filter(Boolean);
  return [
    ...versionHeader(host, model, number, version, "metrics"),
    card(
      null,
      h(
        "p",
        { class: "muted" },
        `${version.task} · ${version.labels.length} labels · registered ${when(version.created_at)}` +
          (counts.length ? ` · ${counts.join(", ")}` : ""),
      ),
      headline(version),
    ),
    h(
      "div",
      { class: "card-grid" },
      card(
        detection ? "Precision–recall curves per class (IoU 0.5)" : "Precision–recall curves",
        h("div", { id: "pr-curves" }, prCurves(version)),
      ),
      card("Per-class metrics", perClassChart(version), perClassTable(version)),
      detection
        ? card("Errors per class (test images)", errorBreakdown(metrics))
        : card("Confusion matrix (test images)", confusion(metrics)),
      card("Training and validation per epoch", trainingCurves(version)),
      card("Thresholds", thresholds(version)),
      card("How it was trained", setupPanel(version)),
      card("Data it learned from", dataPanel(version, lineage)),
    ),
  ];
}
