// What the model views share (models.js, version.js, use.js): cards, tables, the registry's paths, a
// version's header, and how many images its figures were measured on.
import { h } from "./common.js";
import { estimates, estimateText } from "./numbers.js";

export const card = (title, ...children) =>
  h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
export const scroll = (...children) => h("div", { class: "table-scroll" }, ...children);
export const DETECTION = "detection";

export function table(headers, rows, attributes = {}) {
  return scroll(
    h(
      "table",
      attributes,
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map((name) => h("th", { scope: "col", class: name.numeric ? "num" : "" }, name.label ?? name)),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

export async function everyPage(host, path, params = {}) {
  const items = [];
  let continuation;
  do {
    const page = await host.registry(path, { params: { ...params, limit: 200, continuation } });
    items.push(...page.data);
    continuation = page.continuation;
  } while (continuation);
  return items;
}

export const modelPath = (model) => `/v1/models/${encodeURIComponent(model)}`;
export const versionHash = (model, version) => `#/models/${model}/versions/${version}`;

// How many held-out images the metrics were measured on (cross-validation: every image, once).
export const testImages = (metrics) => (Number.isFinite(metrics.test_count) ? metrics.test_count : metrics.image_count);

export function measuredOn(version) {
  const metrics = version.metrics || {};
  // The trainer's estimate on new photos says it all: its value, interval and sample size.
  const [estimate] = estimates(metrics);
  if (estimate) return h("span", { class: "estimate" }, `expected ${estimate.name} ${estimateText(estimate)}`);
  const n = testImages(metrics);
  if (!Number.isFinite(n)) return "–";
  const boxes = Number.isFinite(metrics.box_count) ? `, ${metrics.box_count} boxes` : "";
  const how = metrics.evaluation?.method === "cross-validation" ? " (cross-validation)" : "";
  return `${n} test images${boxes}${how}`;
}

// The one number a list shows for a version, and its name.
export function mainMetric(version) {
  const m = version.metrics || {};
  if (version.task === DETECTION) return ["mAP@0.5", m.map_50];
  if (typeof m.macro_f1 === "number") return ["macro F1", m.macro_f1];
  return ["accuracy", m.accuracy];
}

export function aliasBadges(aliases, version) {
  return Object.entries(aliases)
    .filter(([, v]) => version === undefined || v === version)
    .map(([alias, v]) =>
      h("span", { class: `alias-badge ${alias}` }, version === undefined ? `${alias} → v${v}` : alias),
    );
}

// Whether the scoring service serves each alias's version (the registry asks it; train keys only).

export function versionHeader(host, model, number, version, current) {
  const project = version.project_id;
  const projectLink = project && host.projectLink ? host.projectLink(project) : null;
  const base = versionHash(model, number);
  const tab = (href, text, name) => h("a", { href, "aria-current": current === name ? "page" : false }, text);
  return [
    h("h1", {}, h("a", { href: `#/models/${model}` }, model), ` v${number}`),
    h(
      "nav",
      { class: "links", "aria-label": "This version" },
      tab(base, "Metrics", "metrics"),
      tab(`${base}/test`, "Test and use", "test"),
      projectLink ? h("a", { href: projectLink, id: "project-link" }, `Project ${project}`) : null,
      version.run_id ? h("a", { href: `#/runs/${version.run_id}`, id: "run-link" }, "Its training run") : null,
    ),
  ];
}
