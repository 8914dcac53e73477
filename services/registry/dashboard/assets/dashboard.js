// The dashboard: models, versions with their metrics, comparisons and training runs, read
// from the registry's JSON API with the API key kept in this tab's session storage.
import { barChart, format, lineChart, PALETTE } from "/dashboard/assets/charts.js";
import { ApiError, api, everyPage, h, percent, session, when } from "/dashboard/common/common.js";

const view = document.getElementById("view");
let refreshTimer = null;

const card = (title, ...children) => h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);

function table(headers, rows, attributes = {}) {
  return h(
    "table",
    attributes,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        headers.map((name) => h("th", { class: name.numeric ? "num" : "" }, name.label ?? name)),
      ),
    ),
    h("tbody", {}, rows),
  );
}

const HEADLINE = [
  ["accuracy", "accuracy"],
  ["macro_f1", "macro F1"],
  ["mean_ap", "mean AP"],
  ["map_50", "mAP@0.5"],
  ["map_50_95", "mAP@[.5:.95]"],
];

function headline(metrics) {
  return h(
    "div",
    { class: "metrics" },
    HEADLINE.filter(([key]) => typeof metrics[key] === "number").map(([key, name]) =>
      h(
        "div",
        { class: "metric", dataset: { metric: key, value: metrics[key] } },
        h("div", { class: "value" }, format(metrics[key])),
        h("div", { class: "name" }, name),
      ),
    ),
  );
}

function aliasBadges(aliases, version) {
  return Object.entries(aliases)
    .filter(([, v]) => version === undefined || v === version)
    .map(([alias, v]) => h("span", { class: `badge ${alias}` }, version === undefined ? `${alias} → v${v}` : alias));
}

// -- views --------------------------------------------------------------------------------
async function modelsView() {
  const models = await everyPage("/v1/models");
  const rows = await Promise.all(
    models.map(async (model) => {
      const shown = model.aliases.production ?? model.latest_version;
      let metrics = {};
      try {
        metrics = (await api(`/v1/models/${model.name}/versions/${shown}`)).metrics;
      } catch {
        /* a gap in the numbers */
      }
      return h(
        "tr",
        { dataset: { model: model.name } },
        h("td", {}, h("a", { href: `#/models/${model.name}` }, model.name)),
        h("td", {}, aliasBadges(model.aliases)),
        h("td", { class: "num" }, model.latest_version),
        h("td", { class: "num" }, `v${shown}`),
        h("td", { class: "num", dataset: { metric: "accuracy" } }, format(metrics.accuracy)),
        h("td", { class: "num" }, format(metrics.macro_f1 ?? metrics.map_50)),
        h("td", {}, when(model.updated_at)),
      );
    }),
  );
  return [
    h("h1", {}, "Models"),
    card(
      null,
      models.length
        ? table(
            [
              "model",
              "aliases",
              { label: "latest", numeric: true },
              { label: "shown", numeric: true },
              { label: "accuracy", numeric: true },
              { label: "macro F1 / mAP", numeric: true },
              "updated",
            ],
            rows,
            { id: "models" },
          )
        : h("p", { class: "muted" }, "No models yet: train one with `visiondock train PROJECT`."),
    ),
  ];
}

async function modelView(model) {
  const [summary, versions, runs, production] = await Promise.all([
    api(`/v1/models/${model}`),
    everyPage(`/v1/models/${model}/versions`),
    api("/v1/runs", { params: { model, limit: 10 } }),
    api(`/v1/models/${model}/production`),
  ]);
  const rows = versions.map((version) =>
    h(
      "tr",
      { dataset: { version: version.version } },
      h("td", {}, h("a", { href: `#/models/${model}/versions/${version.version}` }, `v${version.version}`)),
      h("td", {}, aliasBadges(summary.aliases, version.version)),
      h("td", {}, version.task),
      h("td", { class: "num" }, format(version.metrics.accuracy)),
      h("td", { class: "num" }, format(version.metrics.macro_f1 ?? version.metrics.map_50)),
      h("td", { class: "num" }, format(version.metrics.mean_ap)),
      h("td", {}, Object.keys(version.variants || {}).join(", ") || "–"),
      h("td", {}, when(version.created_at)),
    ),
  );
  const numbers = versions.map((v) => v.version);
  const pick = (id, chosen) =>
    h(
      "select",
      { id },
      numbers.map((n) => h("option", { value: n, selected: n === chosen }, `v${n}`)),
    );
  const compareForm = h(
    "form",
    {
      id: "compare-form",
      onsubmit: (event) => {
        event.preventDefault();
        location.hash = `#/models/${model}/compare/${event.target.a.value}/${event.target.b.value}`;
      },
    },
    "Compare ",
    pick("a", numbers[1] ?? numbers[0]),
    " with ",
    pick("b", numbers[0]),
    " ",
    h("button", { type: "submit" }, "Compare"),
  );
  compareForm.a.name = "a";
  compareForm.b.name = "b";
  const histories = await Promise.all(
    Object.keys(summary.aliases).map(
      async (alias) => (await api(`/v1/models/${model}/aliases/${alias}/history`, { params: { limit: 20 } })).data,
    ),
  );
  const moves = histories.flat().sort((a, b) => b.moved_at.localeCompare(a.moved_at));
  return [
    h("h1", {}, model, " ", aliasBadges(summary.aliases)),
    card(
      "Versions",
      versions.length > 1 ? compareForm : null,
      table(
        [
          "version",
          "aliases",
          "task",
          { label: "accuracy", numeric: true },
          { label: "macro F1 / mAP", numeric: true },
          { label: "mean AP", numeric: true },
          "variants",
          "registered",
        ],
        rows,
        { id: "versions" },
      ),
    ),
    card(
      "Alias history",
      moves.length
        ? table(
            ["when", "alias", "change", "by", "reason"],
            moves.map((m) =>
              h(
                "tr",
                {},
                h("td", {}, when(m.moved_at)),
                h("td", {}, m.alias),
                h(
                  "td",
                  {},
                  `${m.action}: ${m.from_version === null ? "–" : `v${m.from_version}`} → ${m.to_version === null ? "deleted" : `v${m.to_version}`}`,
                ),
                h("td", {}, m.actor),
                h("td", {}, m.reason || ""),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No alias has been set."),
    ),
    card("Production behaviour", productionPanel(production)),
    card("Recent training runs", runsTable(runs.data)),
  ];
}

const LEVELS = { stable: "stable", moderate: "moderate", drifted: "drifted" };

function productionPanel(report) {
  if (!report.captured) {
    return h(
      "p",
      { class: "muted", id: "production" },
      "No captured predictions in the last ",
      `${report.windows.length * report.window_minutes} minutes (set VISIONDOCK_SCORING_CAPTURE_RATE on the scoring service).`,
    );
  }
  const psiCell = (value, level) =>
    h(
      "td",
      { class: `num ${level === "drifted" ? "flagged" : ""}`, dataset: { value: value ?? "", level: level ?? "none" } },
      value === null ? "–" : `${format(value)} ${LEVELS[level] ?? ""}`,
    );
  const rows = report.versions.map((v) =>
    h(
      "tr",
      { dataset: { version: v.version, flagged: v.overall.flagged } },
      h("td", {}, `v${v.version}`),
      h("td", { class: "num" }, v.overall.count),
      psiCell(v.overall.psi_confidence, v.overall.level_confidence),
      psiCell(v.overall.psi_label_mix, v.overall.level_label_mix),
      h(
        "td",
        { class: v.overall.flagged ? "flagged" : "" },
        v.overall.flagged ? "drift" : v.baseline ? "ok" : "no baseline",
      ),
    ),
  );
  const labels = Object.keys(report.predictions_per_label);
  const newest = report.versions.find((v) => v.baseline && v.overall.count);
  const share = (counts) => {
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    return counts.map((c) => c / total);
  };
  const bins = report.edges.slice(0, -1).map((edge, i) => `${format(edge, 1)}–${format(report.edges[i + 1], 1)}`);
  return h(
    "div",
    { id: "production" },
    h(
      "p",
      { class: "muted" },
      `${report.captured} captured predictions in ${report.windows.length} windows of ${report.window_minutes} minutes; `,
      `PSI below 0.1 is stable, 0.1–${report.threshold} moderate, from ${report.threshold} flagged.`,
    ),
    table(
      [
        "version",
        { label: "captured", numeric: true },
        { label: "PSI confidence", numeric: true },
        { label: "PSI label mix", numeric: true },
        "drift",
      ],
      rows,
      { id: "drift" },
    ),
    h(
      "div",
      { class: "grid" },
      h(
        "div",
        {},
        h("h3", {}, "Requests and predictions per label"),
        lineChart({
          dots: true,
          xLabel: `window (${report.window_minutes} min), oldest first`,
          yLabel: "predictions",
          series: [
            {
              name: "captured requests",
              dashed: true,
              color: "#98a2b3",
              value: report.captured,
              legend: `captured requests (${report.captured})`,
              points: report.requests.map((count, i) => [i, count]),
            },
            ...labels.map((label, i) => ({
              name: label,
              color: PALETTE[i % PALETTE.length],
              value: report.predictions_per_label[label].reduce((a, b) => a + b, 0),
              legend: `${label} (${report.predictions_per_label[label].reduce((a, b) => a + b, 0)})`,
              points: report.predictions_per_label[label].map((count, j) => [j, count]),
            })),
          ],
        }),
      ),
      newest
        ? h(
            "div",
            { id: "confidence-vs-baseline" },
            h("h3", {}, `Confidence of v${newest.version}: production against its test set`),
            barChart({
              categories: bins,
              yLabel: "share",
              series: [
                { name: "test set", values: share(newest.baseline.confidence_counts), color: PALETTE[7] },
                { name: "production", values: share(newest.overall.confidence_counts), color: PALETTE[0] },
              ],
            }),
          )
        : null,
    ),
  );
}

// Precision holds until recall reaches the next point: PR curves are drawn as steps, not slopes.
function steps(points) {
  return points.flatMap((point, i) => (i ? [[point[0], points[i - 1][1]], point] : [point]));
}

function prCurves(metrics) {
  const curves = metrics.pr_curves || {};
  const series = Object.entries(curves)
    .filter(([, c]) => c.recall?.length)
    .map(([label, curve]) => {
      const ap = metrics.per_class?.[label]?.ap;
      return {
        name: label,
        value: ap,
        legend: `${label} (AP ${format(ap)})`,
        points: steps(curve.recall.map((r, i) => [r, curve.precision[i]]).sort((a, b) => a[0] - b[0])),
      };
    });
  return series.length
    ? lineChart({ series, xDomain: [0, 1], yDomain: [0, 1], xLabel: "recall", yLabel: "precision" })
    : h("p", { class: "muted" }, "No PR curves for this version.");
}

function perClassTable(metrics) {
  const perClass = metrics.per_class || {};
  const names = ["precision", "recall", "f1", "ap", "support"];
  return table(
    ["class", ...names.map((n) => ({ label: n, numeric: true }))],
    Object.entries(perClass).map(([label, row]) =>
      h(
        "tr",
        { dataset: { class: label } },
        h("td", {}, label),
        names.map((n) =>
          h("td", { class: "num", dataset: { metric: n, value: row[n] } }, n === "support" ? row[n] : format(row[n])),
        ),
      ),
    ),
    { id: "per-class" },
  );
}

function perClassChart(metrics) {
  const perClass = metrics.per_class || {};
  const labels = Object.keys(perClass);
  return barChart({
    categories: labels,
    yDomain: [0, 1],
    series: ["precision", "recall", "f1", "ap"].map((name) => ({
      name,
      values: labels.map((label) => perClass[label][name]),
    })),
  });
}

function confusion(metrics) {
  const matrix = metrics.confusion_matrix;
  if (!matrix) return h("p", { class: "muted" }, "No confusion matrix (not a single-label task).");
  const biggest = Math.max(1, ...matrix.matrix.flat());
  return h(
    "table",
    { class: "confusion", id: "confusion" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "true ↓ / predicted →"),
        matrix.labels.map((l) => h("th", {}, l)),
      ),
    ),
    h(
      "tbody",
      {},
      matrix.matrix.map((row, i) =>
        h(
          "tr",
          {},
          h("th", {}, matrix.labels[i]),
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
  );
}

function trainingCurves(metrics) {
  const history = metrics.history || [];
  if (!history.length) return h("p", { class: "muted" }, "No per-epoch history.");
  const keys = [...new Set(history.flatMap((row) => Object.keys(row)))].filter(
    (k) => k !== "epoch" && typeof history[0][k] === "number",
  );
  const losses = keys.filter((k) => k.includes("loss"));
  const others = keys.filter((k) => !k.includes("loss"));
  const chart = (names, label) =>
    lineChart({
      dots: true,
      xLabel: "epoch",
      yLabel: label,
      series: names.map((name) => ({
        name,
        dashed: name.startsWith("val"),
        value: history.at(-1)[name],
        legend: `${name} (last ${format(history.at(-1)[name])})`,
        points: history.filter((row) => typeof row[name] === "number").map((row) => [row.epoch, row[name]]),
      })),
    });
  return h(
    "div",
    { id: "training-curves" },
    losses.length ? chart(losses, "loss") : null,
    others.length ? chart(others, "metric") : null,
  );
}

function thresholds(metrics) {
  const chosen = metrics.thresholds || {};
  const rows = Object.entries(chosen).map(([name, value]) =>
    h("tr", {}, h("td", {}, name), h("td", { class: "num" }, format(value))),
  );
  const extra = metrics.threshold
    ? Object.entries(metrics.threshold).map(([name, value]) =>
        h(
          "tr",
          {},
          h("td", {}, `uncertain: ${name}`),
          h(
            "td",
            { class: "num" },
            typeof value === "number"
              ? format(value)
              : typeof value === "object"
                ? JSON.stringify(value)
                : String(value),
          ),
        ),
      )
    : [];
  return rows.length + extra.length
    ? table(["threshold", { label: "value", numeric: true }], [...rows, ...extra], { id: "thresholds" })
    : h("p", { class: "muted" }, "No thresholds.");
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
          `Snapshot: ${dataset.image_count} images, `,
          h("span", { class: "hash", id: "content-hash" }, dataset.content_hash),
        )
      : h("p", { class: "muted" }, "Registered without lineage."),
    lineage
      ? h(
          "p",
          { class: "muted" },
          `Code ${lineage.code?.version ?? "?"} ${lineage.code?.git_commit ? `(${lineage.code.git_commit.slice(0, 12)})` : ""}; `,
          lineage.parent_version
            ? h(
                "a",
                { href: `#/models/${version.model}/versions/${lineage.parent_version}` },
                `parent v${lineage.parent_version}`,
              )
            : "no parent",
          lineage.changes_from_parent
            ? ` — ${lineage.changes_from_parent.images_added} images added, ${lineage.changes_from_parent.images_removed} removed, ${lineage.changes_from_parent.images_relabeled} relabeled`
            : "",
        )
      : null,
  );
}

function setupPanel(version) {
  const params = version.params || {};
  const metrics = version.metrics || {};
  const variant = (checked) =>
    !checked
      ? "not tried"
      : checked.registered
        ? "registered"
        : checked.error
          ? `not made (${checked.error})`
          : "refused (answers differ from fp32)";
  const refit = metrics.refit ? `on all ${metrics.refit.images} labeled images` : "no (the evaluated model)";
  const rows = [
    ["backbone", params.backbone],
    ["head", params.head],
    ["mode", params.mode],
    ["weight decay", params.weight_decay],
    ["metrics from", metrics.evaluation?.method],
    ["fitted again", refit],
    ["INT8 variant (CPUs)", variant(metrics.int8)],
    ["fp16 variant (GPUs)", variant(metrics.fp16)],
  ]
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([name, value]) => h("tr", { dataset: { setting: name } }, h("td", {}, name), h("td", {}, String(value))));
  const selection = params.selection;
  let chosen = null;
  if (selection?.candidates) {
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
    );
  } else if (selection?.tried) {
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

async function versionView(model, number) {
  const version = await api(`/v1/models/${model}/versions/${number}`);
  let lineage = null;
  try {
    lineage = await api(`/v1/models/${model}/versions/${number}/lineage`);
  } catch (error) {
    if (error.status !== 404) throw error;
  }
  const metrics = version.metrics || {};
  return [
    h("h1", {}, h("a", { href: `#/models/${model}` }, model), ` v${number}`),
    card(
      null,
      h(
        "p",
        { class: "muted" },
        `${version.task} · ${version.labels.length} labels · registered ${when(version.created_at)}`,
      ),
      headline(metrics),
    ),
    h(
      "div",
      { class: "grid" },
      card("Precision–recall curves", h("div", { id: "pr-curves" }, prCurves(metrics))),
      card("Per-class metrics", perClassChart(metrics), perClassTable(metrics)),
      card("Confusion matrix (test images)", confusion(metrics)),
      card("Training and validation per epoch", trainingCurves(metrics)),
      card("Thresholds", thresholds(metrics)),
      card("How it was trained", setupPanel(version)),
      card("Data it learned from", dataPanel(version, lineage)),
    ),
  ];
}

async function compareView(model, a, b) {
  const compared = await api(`/v1/models/${model}/compare`, { params: { a, b } });
  const cell = (d) =>
    h(
      "td",
      { class: `num ${d.change || ""}`, dataset: { change: d.change || "none", delta: d.delta ?? "" } },
      d.delta === null ? "–" : `${d.delta > 0 ? "▲ +" : d.delta < 0 ? "▼ " : ""}${format(d.delta)}`,
    );
  const headlineRows = Object.entries(compared.headline).map(([name, d]) =>
    h(
      "tr",
      { dataset: { metric: name } },
      h("td", {}, name),
      h("td", { class: "num" }, format(d.a)),
      h("td", { class: "num" }, format(d.b)),
      cell(d),
    ),
  );
  const names = ["precision", "recall", "f1", "ap"];
  const classRows = Object.entries(compared.per_class).map(([label, row]) =>
    h(
      "tr",
      { dataset: { class: label } },
      h("td", {}, label),
      names.flatMap((n) => [
        h("td", { class: "num" }, format(row[n].a)),
        h("td", { class: "num" }, format(row[n].b)),
        cell(row[n]),
      ]),
    ),
  );
  const labels = Object.keys(compared.per_class);
  return [
    h("h1", {}, h("a", { href: `#/models/${model}` }, model), `: v${a} against v${b}`),
    card(
      null,
      h(
        "p",
        {},
        `v${b} is better on `,
        h("b", { class: "better" }, compared.summary.better),
        ", worse on ",
        h("b", { class: "worse" }, compared.summary.worse),
        `, the same on ${compared.summary.same} of the per-class figures.`,
      ),
      table(
        [
          "metric",
          { label: `v${a}`, numeric: true },
          { label: `v${b}`, numeric: true },
          { label: "change", numeric: true },
        ],
        headlineRows,
        { id: "compare-headline" },
      ),
    ),
    card(
      "Per class",
      barChart({
        categories: labels,
        yDomain: [0, 1],
        series: [
          { name: `v${a} F1`, values: labels.map((l) => compared.per_class[l].f1.a), color: PALETTE[7] },
          { name: `v${b} F1`, values: labels.map((l) => compared.per_class[l].f1.b), color: PALETTE[0] },
        ],
      }),
      table(
        [
          "class",
          ...names.flatMap((n) => [
            { label: `${n} v${a}`, numeric: true },
            { label: `v${b}`, numeric: true },
            { label: "Δ", numeric: true },
          ]),
        ],
        classRows,
        { id: "compare-per-class" },
      ),
    ),
  ];
}

function runsTable(runs) {
  if (!runs.length) return h("p", { class: "muted" }, "No training runs.");
  return table(
    ["run", "model", "status", "stage", "progress", "latest metrics", "version", "started"],
    runs.map((run) => {
      const share = run.epochs ? Math.min(1, (run.epoch || 0) / run.epochs) : run.status === "succeeded" ? 1 : 0;
      const latest = Object.entries(run.metrics || {})
        .filter(([, v]) => typeof v === "number")
        .map(([k, v]) => `${k} ${format(v)}`)
        .join(", ");
      return h(
        "tr",
        { dataset: { run: run.id, status: run.status } },
        h("td", {}, h("a", { href: `#/runs/${run.id}` }, run.id)),
        h("td", {}, run.model),
        h("td", { class: `status-${run.status}` }, run.status),
        h("td", {}, run.stage || "–"),
        h(
          "td",
          {},
          h(
            "div",
            { class: "progress", title: run.epochs ? `epoch ${run.epoch}/${run.epochs}` : run.status },
            h("div", { style: `width: ${(share * 100).toFixed(0)}%` }),
          ),
          run.epochs ? h("small", { class: "muted" }, ` epoch ${run.epoch ?? 0}/${run.epochs}`) : null,
        ),
        h("td", {}, latest || "–"),
        h(
          "td",
          {},
          run.version ? h("a", { href: `#/models/${run.model}/versions/${run.version}` }, `v${run.version}`) : "–",
        ),
        h("td", {}, when(run.started_at || run.created_at)),
      );
    }),
    { id: "runs" },
  );
}

async function runsView() {
  const runs = (await api("/v1/runs", { params: { limit: 50 } })).data;
  if (runs.some((run) => run.status === "queued" || run.status === "running")) scheduleRefresh(2000);
  return [h("h1", {}, "Training runs"), card(null, runsTable(runs))];
}

async function runView(runId) {
  const [run, log] = await Promise.all([
    api(`/v1/runs/${runId}`),
    api(`/v1/runs/${runId}/logs`, { params: { tail: 200 } }),
  ]);
  if (run.status === "queued" || run.status === "running") scheduleRefresh(2000);
  return [
    h("h1", {}, h("a", { href: "#/runs" }, "Training runs"), ` / ${runId}`),
    card(null, runsTable([run]), run.error ? h("p", { class: "error" }, run.error) : null),
    card(
      "Log",
      log.lines.length
        ? h("pre", { class: "log", id: "run-log" }, log.lines.map((l) => `${l.text}\n`).join(""))
        : h("p", { class: "muted" }, "No log lines yet."),
    ),
  ];
}

// -- routing ------------------------------------------------------------------------------
function scheduleRefresh(ms) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(render, ms);
}

function askForKey(message = "") {
  document.getElementById("forget-key").hidden = true;
  view.replaceChildren(document.getElementById("key-form").content.cloneNode(true));
  document.getElementById("key-error").textContent = message;
  document.getElementById("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    session.set(document.getElementById("api-key").value.trim());
    render();
  });
  document.getElementById("api-key").focus();
}

const ROUTES = [
  [/^#?\/?$/, modelsView],
  [/^#\/models\/([a-z0-9-]+)$/, modelView],
  [/^#\/models\/([a-z0-9-]+)\/versions\/(\d+)$/, versionView],
  [/^#\/models\/([a-z0-9-]+)\/compare\/(\d+)\/(\d+)$/, compareView],
  [/^#\/runs$/, runsView],
  [/^#\/runs\/(run-[a-f0-9]{16})$/, runView],
];

async function render() {
  clearTimeout(refreshTimer);
  if (!session.key) return askForKey();
  document.getElementById("forget-key").hidden = false;
  const route = ROUTES.find(([pattern]) => pattern.test(location.hash));
  try {
    if (!route) throw new ApiError(404, `nothing at ${location.hash}`);
    const content = await route[1](...location.hash.match(route[0]).slice(1));
    view.replaceChildren(...content);
    document.body.dataset.loaded = location.hash || "#/";
  } catch (error) {
    if (error.status === 401) {
      session.clear();
      return askForKey("The registry refused that API key.");
    }
    view.replaceChildren(card("Something went wrong", h("p", { class: "error", role: "alert" }, error.message)));
    document.body.dataset.loaded = "error";
  }
}

document.getElementById("forget-key").addEventListener("click", () => {
  session.clear();
  render();
});
window.addEventListener("hashchange", render);
render();
