// The model views: models, versions with their metrics (classification and detection: version.js),
// comparisons, training runs, and a version's Test page (try it on a photo, and the code that calls it:
// use.js). One set of views for the two pages that show them: the console (the annotation service's /app,
// with labeling and one sign-in; the registry and the scoring service reached through its proxies) and
// the registry's own dashboard.
//
// `modelRoutes(host)` gives the hash routes; `host` says where things are:
//   registry(path, options)   the registry's JSON API (api() of common.js, under the host's prefix)
//   projectLink(project)      the labeling page of a project, or null where there is none
//   me()                      the key the page was opened with: {name, roles, scopes} (GET /v1/me)
//   config                    {scoring_public_url, promote_alias}
//   tryIt(container, version) draws the Test page's "Try it" part, or null
//   refresh(ms)               render the current view again after `ms`

import { barChart, format, lineChart, PALETTE } from "./charts.js";
import { h, when } from "./common.js";
import { DRIFT_MIN_PREDICTIONS, driftNote } from "./numbers.js";
import { aliasBadges, card, everyPage, mainMetric, measuredOn, modelPath, table, versionHash } from "./parts.js";
import { testView } from "./use.js";
import { versionView } from "./version.js";
import { metricName, runMetrics, runState, stageWords } from "./words.js";

// -- views --------------------------------------------------------------------------------------------
async function modelsView(host) {
  const models = await everyPage(host, "/v1/models");
  const rows = await Promise.all(
    models.map(async (model) => {
      const shown = model.aliases.production ?? model.latest_version;
      let version = { metrics: {} };
      try {
        version = await host.registry(`${modelPath(model.name)}/versions/${shown}`);
      } catch {
        /* a gap in the numbers */
      }
      const [name, value] = mainMetric(version);
      const project = version.project_id ?? version.metadata?.project_id;
      const projectLink = project && host.projectLink ? host.projectLink(project) : null;
      return h(
        "tr",
        { dataset: { model: model.name } },
        h("td", {}, h("a", { href: `#/models/${model.name}` }, model.name)),
        h("td", {}, projectLink ? h("a", { href: projectLink }, project) : (project ?? "–")),
        h("td", {}, aliasBadges(model.aliases)),
        h("td", { class: "num" }, model.latest_version),
        h("td", { class: "num" }, h("a", { href: versionHash(model.name, shown) }, `v${shown}`)),
        h("td", { class: "num", dataset: { metric: "accuracy" } }, format(version.metrics.accuracy)),
        h("td", { class: "num", title: name }, format(value)),
        h("td", {}, measuredOn(version)),
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
              "project",
              "aliases",
              { label: "latest", numeric: true },
              { label: "shown", numeric: true },
              { label: "accuracy", numeric: true },
              { label: "macro F1 / mAP@0.5", numeric: true },
              "measured on",
              "updated",
            ],
            rows,
            { id: "models" },
          )
        : h(
            "p",
            { class: "muted" },
            "No models yet: train a project (its Training page, or `visiondock train PROJECT`).",
          ),
    ),
  ];
}

async function servingLine(host, model, aliases) {
  const lines = await Promise.all(
    Object.keys(aliases).map(async (alias) => {
      try {
        const serving = await host.registry(`${modelPath(model)}/aliases/${alias}/serving`);
        return h(
          "li",
          { dataset: { alias, serving: serving.serving } },
          `${alias} → v${serving.version}: `,
          serving.serving ? `serving since ${when(serving.since)}` : `not yet served: ${serving.detail}`,
        );
      } catch {
        return null; // a key that may not ask: the line is left out
      }
    }),
  );
  const shown = lines.filter(Boolean);
  return shown.length ? h("ul", { class: "serving", id: "serving" }, shown) : null;
}

async function modelView(host, model) {
  let summary;
  try {
    summary = await host.registry(modelPath(model));
  } catch (error) {
    if (error.status !== 404) throw error;
    return [
      h("h1", {}, model),
      card(
        null,
        h(
          "p",
          { id: "no-model" },
          `No version of ${model} yet: train it`,
          host.projectLink ? [" on ", h("a", { href: `#/p/${model}/training` }, "its project's Training page")] : "",
          ".",
        ),
      ),
    ];
  }
  const [versions, runs, production] = await Promise.all([
    everyPage(host, `${modelPath(model)}/versions`),
    host.registry("/v1/runs", { params: { model, limit: 10 } }),
    host.registry(`${modelPath(model)}/production`),
  ]);
  const project = versions[0]?.project_id;
  const rows = versions.map((version) => {
    const [name, value] = mainMetric(version);
    return h(
      "tr",
      { dataset: { version: version.version } },
      h("td", {}, h("a", { href: versionHash(model, version.version) }, `v${version.version}`)),
      h("td", {}, aliasBadges(summary.aliases, version.version)),
      h("td", {}, version.task),
      h("td", { class: "num", title: name }, format(value)),
      h("td", {}, measuredOn(version)),
      h("td", {}, Object.keys(version.variants || {}).join(", ") || "–"),
      h("td", {}, when(version.created_at)),
      h("td", {}, h("a", { href: `${versionHash(model, version.version)}/test` }, "Test and use")),
    );
  });
  const numbers = versions.map((v) => v.version);
  const pick = (id, chosen, label) =>
    h(
      "select",
      { id, name: id, "aria-label": label },
      numbers.map((n) => h("option", { value: n, selected: n === chosen }, `v${n}`)),
    );
  const compareForm = h(
    "form",
    {
      id: "compare-form",
      class: "inline",
      onsubmit: (event) => {
        event.preventDefault();
        location.hash = `#/models/${model}/compare/${event.target.a.value}/${event.target.b.value}`;
      },
    },
    "Compare ",
    pick("a", numbers[1] ?? numbers[0], "reference version"),
    " with ",
    pick("b", numbers[0], "candidate version"),
    " ",
    h("button", { type: "submit" }, "Compare"),
  );
  const histories = await Promise.all(
    Object.keys(summary.aliases).map(
      async (alias) =>
        (await host.registry(`${modelPath(model)}/aliases/${alias}/history`, { params: { limit: 20 } })).data,
    ),
  );
  const moves = histories.flat().sort((a, b) => b.moved_at.localeCompare(a.moved_at));
  const projectLink = project && host.projectLink ? host.projectLink(project) : null;
  return [
    h("h1", {}, model, " ", aliasBadges(summary.aliases)),
    h(
      "p",
      { class: "links" },
      projectLink ? h("a", { href: projectLink, id: "project-link" }, `Project ${project}`) : null,
      h("a", { href: "#/runs" }, "All training runs"),
    ),
    await servingLine(host, model, summary.aliases),
    card(
      "Versions",
      versions.length > 1 ? compareForm : null,
      table(
        [
          "version",
          "aliases",
          "task",
          { label: "accuracy / macro F1 / mAP@0.5", numeric: true },
          "measured on",
          "variants",
          "registered",
          "",
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
    card("Recent training runs", runsTable(host, runs.data)),
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
  const psiCell = (value, level, count) =>
    h(
      "td",
      {
        class: `num ${level === "drifted" ? "flagged" : ""}`,
        dataset: { value: value ?? "", level: level ?? "none" },
        title: driftNote(count) ?? "",
      },
      value === null ? "–" : `${format(value)} ${LEVELS[level] ?? ""}${count < DRIFT_MIN_PREDICTIONS ? " *" : ""}`,
    );
  const rows = report.versions.map((v) =>
    h(
      "tr",
      { dataset: { version: v.version, flagged: v.overall.flagged } },
      h("td", {}, `v${v.version}`),
      h("td", { class: "num" }, v.overall.count),
      psiCell(v.overall.psi_confidence, v.overall.level_confidence, v.overall.count),
      psiCell(v.overall.psi_label_mix, v.overall.level_label_mix, v.overall.count),
      h(
        "td",
        { class: v.overall.flagged ? "flagged" : "" },
        v.overall.flagged ? "drift" : v.baseline ? "ok" : "no baseline",
      ),
    ),
  );
  const few = report.versions.filter((v) => v.overall.count && v.overall.count < DRIFT_MIN_PREDICTIONS);
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
      `${report.captured} captured prediction${report.captured === 1 ? "" : "s"} in ${report.windows.length} windows of ${report.window_minutes} minutes; `,
      `PSI below 0.1 is stable, 0.1–${report.threshold} moderate, from ${report.threshold} flagged.`,
    ),
    few.length
      ? h(
          "p",
          { class: "caveat", id: "drift-caveat" },
          `* ${few.map((v) => `v${v.version}: ${driftNote(v.overall.count)}`).join(" ")}`,
        )
      : null,
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
      { class: "card-grid" },
      h(
        "div",
        {},
        h("h3", {}, "Requests and predictions per label"),
        lineChart({
          dots: true,
          xLabel: `window (${report.window_minutes} min), oldest first`,
          yLabel: "count per window",
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
              yLabel: "share of predictions",
              yDomain: [0, 1],
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

// -- comparisons and runs -------------------------------------------------------------------------------
async function compareView(host, model, a, b) {
  const compared = await host.registry(`${modelPath(model)}/compare`, { params: { a, b } });
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
      h("td", {}, metricName(name)),
      h("td", { class: "num" }, format(d.a)),
      h("td", { class: "num" }, format(d.b)),
      cell(d),
    ),
  );
  const rows = Object.values(compared.per_class);
  // Only the figures either version has (a classifier's F1 and AP, a detector's AP@0.5 and AP@[.5:.95]).
  const names = ["precision", "recall", "f1", "ap", "ap_50", "ap_50_95"].filter((n) =>
    rows.some((row) => row[n] && (row[n].a !== null || row[n].b !== null)),
  );
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
  const chartMetric = names.includes("f1") ? "f1" : names.includes("ap_50") ? "ap_50" : names[0];
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
      chartMetric
        ? barChart({
            categories: labels,
            yDomain: [0, 1],
            yLabel: metricName(chartMetric),
            series: [
              { name: `v${a}`, values: labels.map((l) => compared.per_class[l][chartMetric].a), color: PALETTE[7] },
              { name: `v${b}`, values: labels.map((l) => compared.per_class[l][chartMetric].b), color: PALETTE[0] },
            ],
          })
        : null,
      table(
        [
          "class",
          ...names.flatMap((n) => [
            { label: `${metricName(n)} v${a}`, numeric: true },
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

function runsTable(host, runs) {
  if (!runs.length) return h("p", { class: "muted" }, "No training runs.");
  return table(
    ["run", "model", "project", "state", "progress", "latest figures", "version", "started"],
    runs.map((run) => {
      const share = run.epochs ? Math.min(1, (run.epoch || 0) / run.epochs) : run.status === "succeeded" ? 1 : 0;
      const projectLink = run.project_id && host.projectLink ? host.projectLink(run.project_id) : null;
      return h(
        "tr",
        { dataset: { run: run.id, status: run.status } },
        h("td", {}, h("a", { href: `#/runs/${run.id}` }, run.id)),
        h("td", {}, h("a", { href: `#/models/${run.model}` }, run.model)),
        h("td", {}, projectLink ? h("a", { href: projectLink }, run.project_id) : (run.project_id ?? "–")),
        h("td", { class: `status-${run.status}` }, runState(run)),
        h(
          "td",
          {},
          h(
            "div",
            {
              class: "progress",
              role: "progressbar",
              "aria-label": `run ${run.id}`,
              "aria-valuemin": 0,
              "aria-valuemax": 100,
              "aria-valuenow": Math.round(share * 100),
            },
            h("div", { style: `width: ${(share * 100).toFixed(0)}%` }),
          ),
          run.epochs ? h("small", { class: "muted" }, ` epoch ${run.epoch ?? 0} of ${run.epochs}`) : null,
        ),
        h("td", {}, runMetrics(run.metrics) || "–"),
        h("td", {}, run.version ? h("a", { href: versionHash(run.model, run.version) }, `v${run.version}`) : "–"),
        h("td", {}, when(run.started_at || run.created_at)),
      );
    }),
    { id: "runs" },
  );
}

const ACTIVE = new Set(["queued", "running"]);

async function runsView(host) {
  const runs = (await host.registry("/v1/runs", { params: { limit: 50 } })).data;
  if (runs.some((run) => ACTIVE.has(run.status))) host.refresh(2000);
  return [h("h1", {}, "Training runs"), card(null, runsTable(host, runs))];
}

async function runView(host, runId) {
  const [run, log] = await Promise.all([
    host.registry(`/v1/runs/${runId}`),
    host.registry(`/v1/runs/${runId}/logs`, { params: { tail: 200 } }),
  ]);
  if (ACTIVE.has(run.status)) host.refresh(2000);
  return [
    h("h1", {}, h("a", { href: "#/runs" }, "Training runs"), ` / ${runId}`),
    card(
      null,
      h("p", { class: "run-state", id: "run-state" }, runState(run)),
      run.stage && ACTIVE.has(run.status) ? h("p", { class: "muted" }, `Now ${stageWords(run.stage)}.`) : null,
      runsTable(host, [run]),
    ),
    card(
      "The trainer's log, as it wrote it",
      log.lines.length
        ? h("pre", { class: "log", id: "run-log", tabindex: "0" }, log.lines.map((l) => `${l.text}\n`).join(""))
        : h("p", { class: "muted" }, "No log lines yet."),
    ),
  ];
}

// -- routes ------------------------------------------------------------------------------------------------
const NAME = "([a-z0-9][a-z0-9-]*)";

// The hash routes of the model views: [pattern, view(...captured groups)].
export function modelRoutes(host) {
  return [
    [/^#\/models$/, () => modelsView(host)],
    [new RegExp(`^#/models/${NAME}$`), (model) => modelView(host, model)],
    [new RegExp(`^#/models/${NAME}/versions/(\\d+)$`), (model, v) => versionView(host, model, v)],
    [new RegExp(`^#/models/${NAME}/versions/(\\d+)/test$`), (model, v) => testView(host, model, v)],
    [new RegExp(`^#/models/${NAME}/compare/(\\d+)/(\\d+)$`), (model, a, b) => compareView(host, model, a, b)],
    [/^#\/runs$/, () => runsView(host)],
    [/^#\/runs\/(run-[a-f0-9]{16})$/, (runId) => runView(host, runId)],
  ];
}

// The view of `hash` among `routes`, or null.
export function routeOf(routes, hash) {
  for (const [pattern, view] of routes) {
    const match = hash.match(pattern);
    if (match) return () => view(...match.slice(1));
  }
  return null;
}
