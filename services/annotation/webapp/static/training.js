// Training: start a run (the registry launches the trainer), watch its progress, promote a version.
import { registry } from "./api.js";
import { fail, h, percent, say } from "./ui.js";

const FINISHED = new Set(["succeeded", "failed"]);

function mainMetric(version) {
  const m = version.metrics || {};
  if (m.map_50 !== undefined) return `mAP@0.5 ${percent(m.map_50)}`;
  if (m.accuracy !== undefined) return `accuracy ${percent(m.accuracy)}`;
  if (m.f1_macro !== undefined) return `F1 ${percent(m.f1_macro)}`;
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
  const progress = h("section", { class: "card run", "aria-label": "Current run", "aria-live": "polite" });
  const runs = h("tbody");
  const versions = h("tbody");
  let timer = null;

  main.replaceChildren(
    h("h1", {}, "Training"),
    h("form", { class: "card inline", onsubmit: launch }, h("label", { for: "train-mode" }, "Mode"), mode, start),
    progress,
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
          ["Version", "Created", "Held-out", "Aliases", ""].map((c) => h("th", { scope: "col" }, c)),
        ),
      ),
      versions,
    ),
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
          ["Run", "Status", "Stage", "Version", "Started"].map((c) => h("th", { scope: "col" }, c)),
        ),
      ),
      runs,
    ),
  );

  function showRun(run) {
    const epochs = run.epochs
      ? h("progress", { max: run.epochs, value: run.epoch || 0, "aria-label": "epochs" })
      : null;
    const metrics = Object.entries(run.metrics || {})
      .filter(([, v]) => typeof v === "number")
      .map(([k, v]) => `${k} ${Math.round(v * 1000) / 1000}`)
      .join(" · ");
    progress.replaceChildren(
      h("h2", {}, `Run ${run.id}`),
      h(
        "p",
        { class: `run-status ${run.status}` },
        `${run.status}${run.stage ? ` · ${run.stage}` : ""}` +
          (run.epochs ? ` · epoch ${run.epoch || 0} of ${run.epochs}` : "") +
          (run.version ? ` · version ${run.version}` : ""),
      ),
      ...[
        epochs,
        metrics ? h("p", {}, metrics) : null,
        run.error ? h("p", { class: "error" }, run.error) : null,
      ].filter(Boolean),
    );
  }

  async function refresh() {
    const [runPage, model] = await Promise.all([
      registry(`/v1/runs?model=${encodeURIComponent(project)}&limit=10`),
      registry(`/v1/models/${encodeURIComponent(project)}`).catch(() => null),
    ]);
    runs.replaceChildren(
      ...runPage.data.map((r) =>
        h(
          "tr",
          {},
          h("td", {}, r.id),
          h("td", {}, r.status),
          h("td", {}, r.stage || ""),
          h("td", {}, r.version ?? ""),
          h("td", {}, r.started_at ? new Date(r.started_at).toLocaleString() : ""),
        ),
      ),
    );
    if (!runPage.data.length) runs.append(h("tr", {}, h("td", { colspan: 5 }, "No runs yet.")));
    if (runPage.data.length) showRun(runPage.data[0]);
    else progress.replaceChildren(h("p", {}, "No training has run for this project yet."));
    versions.replaceChildren();
    if (model) {
      const list = (await registry(`/v1/models/${encodeURIComponent(project)}/versions?limit=20`)).data;
      for (const v of list) {
        const named = Object.entries(model.aliases)
          .filter(([, n]) => n === v.version)
          .map(([a]) => a);
        versions.append(
          h(
            "tr",
            {},
            h("td", {}, `v${v.version}`),
            h("td", {}, new Date(v.created_at).toLocaleString()),
            h("td", {}, mainMetric(v)),
            h("td", {}, named.join(", ")),
            h(
              "td",
              {},
              named.includes(alias)
                ? ""
                : h(
                    "button",
                    { type: "button", onclick: () => promote(v.version) },
                    `Promote v${v.version} to ${alias}`,
                  ),
            ),
          ),
        );
      }
    }
    if (!versions.children.length) versions.append(h("tr", {}, h("td", { colspan: 5 }, "No versions yet.")));
    const active = runPage.data.find((r) => !FINISHED.has(r.status));
    clearTimeout(timer);
    if (active) timer = setTimeout(() => refresh().catch(fail), 1000);
  }

  async function launch(event) {
    event.preventDefault();
    start.disabled = true;
    try {
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
      say(`Version ${version} is now ${alias}.`);
      await refresh();
    } catch (e) {
      fail(e);
    }
  }

  await refresh();
  return () => clearTimeout(timer);
}
