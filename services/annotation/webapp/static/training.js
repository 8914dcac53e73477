// Training: start a run (the registry launches the trainer) once the labels can train, watch its progress,
// promote a version and see when the scoring service serves it. Runs are polled only while one is active;
// the model's versions are read only once a run has registered one.
import { estimates, estimateText, proportion, smallSampleNote } from "/app/common/numbers.js";
import { runMetrics, runState } from "/app/common/words.js";
import { api, projectPath, registry } from "./api.js";
import { trainingProblem } from "./readiness.js";
import { fail, h, say } from "./ui.js";

const ACTIVE = new Set(["queued", "running"]);

// How good a version is on images it never saw: its estimate with interval and sample size, or else its
// held-out figure with the images it was measured on (and its interval when they are few).
function heldOut(version) {
  const m = version.metrics || {};
  // The trainer's estimate on new photos, with its interval and sample size, where the version has one.
  const [estimate] = estimates(m);
  if (estimate) return h("span", { class: "estimate" }, `${estimate.name} ${estimateText(estimate)}`);
  const n = Number.isFinite(m.test_count) ? m.test_count : m.image_count;
  if (version.task === "detection" && typeof m.map_50 === "number") {
    const note = smallSampleNote(n);
    return [
      `mAP@0.5 ${m.map_50.toFixed(3)} on ${n ?? "?"} test images`,
      note ? h("br") : null,
      note ? h("small", {}, note) : null,
    ];
  }
  if (typeof m.accuracy === "number") return `accuracy ${proportion(m.accuracy, n, "test images").text}`;
  if (typeof m.macro_f1 === "number") return `macro F1 ${m.macro_f1.toFixed(3)} on ${n ?? "?"} test images`;
  return "—";
}

export async function trainingView(main, project) {
  const config = await (await fetch("/app/config.json")).json();
  const alias = config.promote_alias;
  const mode = h(
    "select",
    { id: "train-mode" },
    h("option", { value: "quick" }, "quick (frozen backbone)"),
    h("option", { value: "advanced" }, "advanced (fine-tune)"),
  );
  const start = h("button", { type: "submit", class: "primary" }, "Start training");
  const problem = h("p", { class: "error", id: "train-problem", role: "alert" });
  const progress = h("section", { class: "card run", "aria-label": "Current run", "aria-live": "polite" });
  const runs = h("tbody");
  const versions = h("tbody");
  const serving = h("p", { id: "serving", role: "status" });
  let timer = null;
  let versionsShown = null; // the newest registered version shown, so a poll reads the versions only when it changes

  main.replaceChildren(
    h("h1", {}, "Training"),
    h(
      "p",
      { class: "links" },
      h("a", { href: `#/models/${encodeURIComponent(project)}` }, `Model ${project}: versions, metrics and drift`),
    ),
    h(
      "form",
      { class: "card inline", onsubmit: launch },
      h("label", { for: "train-mode" }, "Mode"),
      mode,
      start,
      problem,
    ),
    progress,
    serving,
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        {},
        h("caption", {}, "Versions"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Version", "Created", "How good (on images it never saw)", "Aliases", ""].map((c) =>
              h("th", { scope: "col" }, c),
            ),
          ),
        ),
        versions,
      ),
    ),
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        {},
        h("caption", {}, "Runs"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Run", "State", "Version", "Started"].map((c) => h("th", { scope: "col" }, c)),
          ),
        ),
        runs,
      ),
    ),
  );

  function showRun(run) {
    const epochs = run.epochs
      ? h("progress", { max: run.epochs, value: run.epoch || 0, "aria-label": "epochs" })
      : null;
    const figures = runMetrics(run.metrics);
    progress.replaceChildren(
      h("h2", {}, "Run ", h("a", { href: `#/runs/${run.id}` }, run.id)),
      h("p", { class: `run-status ${run.status}` }, runState(run)),
      ...[
        epochs,
        figures ? h("p", {}, figures) : null,
        run.version
          ? h(
              "p",
              {},
              h("a", { href: `#/models/${run.model}/versions/${run.version}` }, `Version ${run.version}: its metrics`),
              " · ",
              h("a", { href: `#/models/${run.model}/versions/${run.version}/test` }, "test it on a photo"),
            )
          : null,
      ].filter(Boolean),
    );
  }

  async function showVersions() {
    const [model, list] = await Promise.all([
      registry(`/v1/models/${encodeURIComponent(project)}`),
      registry(`/v1/models/${encodeURIComponent(project)}/versions?limit=20`),
    ]);
    versions.replaceChildren(
      ...list.data.map((v) => {
        const named = Object.entries(model.aliases)
          .filter(([, n]) => n === v.version)
          .map(([a]) => a);
        return h(
          "tr",
          { dataset: { version: v.version } },
          h(
            "td",
            {},
            h("a", { href: `#/models/${encodeURIComponent(project)}/versions/${v.version}` }, `v${v.version}`),
          ),
          h("td", {}, new Date(v.created_at).toLocaleString()),
          h("td", {}, heldOut(v)),
          h("td", {}, named.join(", ")),
          h(
            "td",
            {},
            named.includes(alias)
              ? ""
              : h("button", { type: "button", onclick: () => promote(v.version) }, `Promote v${v.version} to ${alias}`),
          ),
        );
      }),
    );
    if (!versions.children.length) versions.append(h("tr", {}, h("td", { colspan: 5 }, "No versions yet.")));
  }

  async function refresh() {
    const runPage = await registry(`/v1/runs?model=${encodeURIComponent(project)}&limit=10`);
    runs.replaceChildren(
      ...runPage.data.map((r) =>
        h(
          "tr",
          { dataset: { run: r.id, status: r.status } },
          h("td", {}, h("a", { href: `#/runs/${r.id}` }, r.id)),
          h("td", {}, runState(r)),
          h("td", {}, r.version ? h("a", { href: `#/models/${r.model}/versions/${r.version}` }, `v${r.version}`) : ""),
          h("td", {}, r.started_at ? new Date(r.started_at).toLocaleString() : ""),
        ),
      ),
    );
    if (!runPage.data.length) runs.append(h("tr", {}, h("td", { colspan: 4 }, "No runs yet.")));
    if (runPage.data.length) showRun(runPage.data[0]);
    else progress.replaceChildren(h("p", {}, "No training has run for this project yet."));
    // Every version comes from a run: without a registered one there is no model to ask about.
    const newest = Math.max(0, ...runPage.data.map((r) => r.version || 0));
    if (newest && newest !== versionsShown) {
      await showVersions();
      versionsShown = newest;
    } else if (!newest && !versions.children.length) {
      versions.append(h("tr", {}, h("td", { colspan: 5 }, "No versions yet.")));
    }
    clearTimeout(timer);
    if (runPage.data.some((r) => ACTIVE.has(r.status))) timer = setTimeout(() => refresh().catch(fail), 1000);
  }

  async function launch(event) {
    event.preventDefault();
    problem.textContent = "";
    start.disabled = true;
    try {
      const [stats, about] = await Promise.all([api(`${projectPath(project)}/stats`), api(projectPath(project))]);
      const why = trainingProblem(stats, about.type);
      if (why) {
        problem.textContent = `Not started: ${why}`;
        return;
      }
      const run = await registry("/v1/runs", {
        method: "POST",
        json: { model: project, project_id: project, launch: config.launch, params: { mode: mode.value } },
      });
      say(`Training started: run ${run.id}.`);
      showRun(run);
      await refresh();
    } catch (e) {
      fail(e);
    } finally {
      start.disabled = false;
    }
  }

  async function promote(version) {
    try {
      await registry(`/v1/models/${encodeURIComponent(project)}/aliases/${alias}`, {
        method: "PUT",
        json: { version },
      });
      say(`Version ${version} is now ${alias}; waiting for the scoring service to serve it…`);
      serving.textContent = "";
      await showVersions();
      // The registry asks the scoring service to load it now and answers once it serves (or says why not).
      const state = await registry(`/v1/models/${encodeURIComponent(project)}/aliases/${alias}/serving?wait=30`);
      const words = state.serving
        ? `Version ${version} is now ${alias}; serving since ${new Date(state.since).toLocaleTimeString()}.`
        : `Version ${version} is now ${alias}; not yet served: ${state.detail}.`;
      serving.className = state.serving ? "served" : "caveat";
      serving.textContent = words;
      say(words, state.serving ? "info" : "error");
    } catch (e) {
      fail(e);
    }
  }

  await refresh();
  return () => clearTimeout(timer);
}
