// "Try it": a photo dropped or picked on a version's Test page, scored by the scoring service (through this
// service's /app/scoring proxy, with the key signed in), and its answer drawn in the product's one drawing
// style (GET /v1/drawing-style, as /v1/render draws), with the time each stage took.
import { ApiError, api } from "./api.js";
import { colourOf, loadStyle, textColourOf } from "./boxes.js";
import { placeLabels } from "./layout.js";
import { h, percent } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const STAGES = [
  ["decode", "decoding the photo"],
  ["preprocess", "resizing and normalizing"],
  ["queue", "waiting for a batch"],
  ["inference", "the model itself"],
  ["postprocess", "reading the answer"],
  ["total", "total, in the scoring service"],
];

const scoring = (path, options) => api(`/app/scoring${path}`, options);

function svg(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

// Sizes by the style's rules (visiondock/drawing.py): line width from the shorter side, font from the height.
function sizes(style, width, height) {
  const line = style.line_width;
  const font = style.font_size;
  return {
    line: Math.max(line.min_px, Math.round(Math.min(width, height) * line.fraction_of_shorter_side)),
    font: Math.floor(Math.min(Math.max(height * font.fraction_of_height, font.min_px), font.max_px)),
    pad: style.label.padding_px,
  };
}

const measure = (() => {
  const context = document.createElement("canvas").getContext("2d");
  return (text, font) => {
    context.font = `${font}px sans-serif`;
    return context.measureText(text).width;
  };
})();

function strip(group, { x, y, w, hgt, text, fill, ink, font, pad }) {
  group.append(svg("rect", { x, y, width: w, height: hgt, fill }));
  group.append(
    svg(
      "text",
      { x: x + pad, y: y + pad + font * 0.85, fill: ink, "font-size": font, "font-family": "sans-serif" },
      text,
    ),
  );
}

// The answer drawn over the photo at `url`: boxes with label strips placed so that none covers another, or
// a classification's banner in the top left corner.
function drawAnswer(style, url, answer) {
  const { width, height } = answer.image;
  const { line, font, pad } = sizes(style, width, height);
  const picture = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "the photo with the answer drawn on it",
  });
  picture.append(svg("image", { href: url, x: 0, y: 0, width, height, preserveAspectRatio: "none" }));
  const strips = svg("g");
  const stripHeight = font * 1.2 + 2 * pad;
  if (answer.detections) {
    const boxes = answer.detections.map((found) => ({
      ...found.box,
      label: found.label,
      text: `${found.label} ${found.score.toFixed(2)}`,
    }));
    for (const box of boxes) {
      picture.append(
        svg("rect", {
          x: box.x1,
          y: box.y1,
          width: box.x2 - box.x1,
          height: box.y2 - box.y1,
          fill: "none",
          stroke: colourOf(box.label),
          "stroke-width": line,
          "data-label": box.label,
        }),
      );
    }
    const placed = placeLabels(
      boxes.map((b) => ({ ...b, w: measure(b.text, font) + 2 * pad, h: stripHeight })),
      width,
      height,
    );
    for (const [i, box] of boxes.entries()) {
      strip(strips, {
        x: placed[i].x,
        y: placed[i].y,
        w: measure(box.text, font) + 2 * pad,
        hgt: stripHeight,
        text: box.text,
        fill: colourOf(box.label),
        ink: textColourOf(box.label),
        font,
        pad,
      });
    }
  } else {
    let text = "no tag";
    if (answer.tags?.length) text = answer.tags.map((t) => `${t.label} ${t.probability.toFixed(2)}`).join(", ");
    else if (answer.label !== null && answer.label !== undefined)
      text = `${answer.label} ${answer.probability.toFixed(2)}`;
    if (answer.uncertain) text += " (uncertain)";
    const labeled = answer.label !== null && answer.label !== undefined;
    strip(strips, {
      x: line,
      y: line + 1,
      w: measure(text, font) + 2 * pad,
      hgt: stripHeight,
      text,
      fill: labeled ? colourOf(answer.label) : style.banner.neutral_colour,
      ink: labeled ? textColourOf(answer.label) : "#ffffff",
      font,
      pad,
    });
  }
  picture.append(strips); // after every outline, so no outline crosses a label
  return picture;
}

function timings(answer) {
  const ms = answer.timings_ms || {};
  const longest = Math.max(1, ...Object.values(ms));
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { id: "timings" },
      h("caption", { class: "muted" }, "Time per stage, in milliseconds (measured by the scoring service)"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "stage"),
          h("th", { scope: "col", class: "num" }, "ms"),
          h("th", { scope: "col" }, ""),
        ),
      ),
      h(
        "tbody",
        {},
        STAGES.filter(([key]) => typeof ms[key] === "number").map(([key, words]) =>
          h(
            "tr",
            { dataset: { stage: key, value: ms[key] } },
            h("td", {}, words),
            h("td", { class: "num" }, ms[key].toFixed(1)),
            h(
              "td",
              {},
              h(
                "div",
                { class: "progress", "aria-hidden": "true" },
                h("div", { style: `width: ${((ms[key] / longest) * 100).toFixed(0)}%` }),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

// threshold: the version's own (`uncertain`, or `unknown` for faces); note: why to doubt it, if anything.
function verdict(answer, threshold, note) {
  if (answer.detections) {
    const count = answer.detections.length;
    // Per label: how many boxes and the best score; every box in a list that opens on request.
    const byLabel = new Map();
    for (const d of answer.detections) {
      const seen = byLabel.get(d.label) ?? { count: 0, best: 0 };
      byLabel.set(d.label, { count: seen.count + 1, best: Math.max(seen.best, d.score) });
    }
    return h(
      "div",
      {},
      h(
        "p",
        { class: "verdict", id: "verdict" },
        count ? `${count} object${count === 1 ? "" : "s"} found` : "Nothing found",
      ),
      count
        ? h(
            "ul",
            { id: "detections" },
            [...byLabel].map(([label, seen]) =>
              h(
                "li",
                { dataset: { label, count: seen.count } },
                `${label}: ${seen.count} (best score ${seen.best.toFixed(2)})`,
              ),
            ),
          )
        : null,
      count
        ? h(
            "details",
            {},
            h("summary", {}, "Every box"),
            h(
              "ol",
              {},
              answer.detections.map((d) =>
                h(
                  "li",
                  {},
                  `${d.label} ${d.score.toFixed(2)} at (${d.box.x1.toFixed(0)}, ${d.box.y1.toFixed(0)})–(${d.box.x2.toFixed(0)}, ${d.box.y2.toFixed(0)})`,
                ),
              ),
            ),
          )
        : null,
    );
  }
  const best = answer.tags?.length ? answer.tags.map((t) => t.label).join(", ") : (answer.label ?? "no tag");
  return h(
    "div",
    {},
    h(
      "p",
      { class: "verdict", id: "verdict" },
      answer.probability !== null && answer.probability !== undefined
        ? `${best} (${percent(answer.probability)})`
        : best,
    ),
    answer.uncertain
      ? h(
          "p",
          { class: "caveat", id: "uncertain" },
          typeof threshold === "number"
            ? `Uncertain: ${percent(answer.probability)} is below ${percent(threshold, 2)}, this version's threshold. `
            : "Uncertain: the probability is below this version's threshold. ",
          note ?? "",
        )
      : null,
    answer.predictions?.length
      ? h(
          "ul",
          { id: "predictions" },
          answer.predictions.map((p) => h("li", {}, `${p.label}: ${percent(p.probability)}`)),
        )
      : null,
  );
}

// What the scoring service serves of `model` now: each target's alias (or `v<N>` when pinned) and version.
async function servedTargets(model) {
  const listing = await scoring("/v1/models");
  const entries = (listing.models || []).filter((m) => m.name === model);
  return entries.map((m) => ({ slot: m.slot, version: m.model?.version ?? null, state: m.state }));
}

export async function tryIt(container, { model, version, labels, thresholds = {}, thresholdNote = null }) {
  const style = await loadStyle(labels);
  const status = h("p", { class: "muted", id: "try-status", role: "status" });
  const result = h("div", { class: "answer", id: "try-answer" });
  const target = h("select", { id: "try-target", "aria-label": "Which model answers" });
  let served = [];
  try {
    served = await servedTargets(model);
  } catch (error) {
    status.textContent = `Cannot ask the scoring service what it serves: ${error.message}`;
  }
  const servesVersion = served.some((s) => s.version === version);
  target.append(
    h(
      "option",
      { value: `/v1/models/${model}/versions/${version}/predict`, disabled: !servesVersion },
      `version ${version}${servesVersion ? "" : " (not served now)"}`,
    ),
    ...served
      .filter((s) => s.slot && !s.slot.startsWith("v"))
      .map((s) =>
        h(
          "option",
          { value: `/v1/models/${model}/aliases/${s.slot}/predict` },
          `${s.slot} (serves v${s.version ?? "?"})`,
        ),
      ),
  );
  if (!servesVersion) {
    const now = served.map((s) => `v${s.version ?? "?"} at ${s.slot}`).join(", ");
    status.className = "caveat";
    status.textContent = served.length
      ? `The scoring service does not serve version ${version} now (it serves ${now}). Promote it, or serve it pinned (VISIONDOCK_SCORING_MODELS=…,${model}:${version}); meanwhile you can try what an alias serves.`
      : `The scoring service does not serve ${model}: promote a version to production (a service started with \`*@production\` serves every production model).`;
    const firstAlias = [...target.options].find((o) => !o.disabled);
    if (firstAlias) target.value = firstAlias.value;
  }
  const askable = [...target.options].some((o) => !o.disabled);

  let shownUrl = null;

  async function score(file) {
    if (!file) return;
    if (!file.type.startsWith("image/")) {
      status.className = "error";
      status.textContent = `${file.name} is not a photo (${file.type || "unknown type"}).`;
      return;
    }
    status.className = "muted";
    status.textContent = `Asking the scoring service about ${file.name}…`;
    result.replaceChildren();
    try {
      const started = performance.now();
      const answer = await scoring(target.value, {
        method: "POST",
        body: file,
        headers: { "Content-Type": file.type },
      });
      const roundTrip = performance.now() - started;
      if (shownUrl) URL.revokeObjectURL(shownUrl); // the photo tried before is no longer shown
      const url = URL.createObjectURL(file);
      shownUrl = url;
      result.replaceChildren(
        h("div", { class: "try-stage" }, drawAnswer(style, url, answer)),
        verdict(answer, thresholds.uncertain ?? thresholds.unknown, thresholdNote),
        h(
          "p",
          { class: "muted", id: "answered-by" },
          `Answered by ${answer.model} version ${answer.version} (${answer.alias}, ${answer.variant}) in a batch of ${answer.batch_size}; `,
          `${roundTrip.toFixed(0)} ms from this page, there and back.`,
        ),
        timings(answer),
      );
      status.className = "muted";
      status.textContent = `${file.name}: answered.`;
      document.body.dataset.tried = file.name;
    } catch (error) {
      status.className = "error";
      status.textContent =
        error instanceof ApiError && error.code === "version_not_served"
          ? `Version ${version} is not served now: ${error.message}`
          : `The scoring service could not answer: ${error.message}`;
    }
  }

  const input = h("input", {
    type: "file",
    accept: "image/*",
    id: "try-file",
    class: "visually-hidden",
    onchange: (e) => score(e.target.files[0]),
  });
  const drop = h(
    "div",
    {
      class: "try-drop",
      id: "try-drop",
      ondragover: (e) => {
        e.preventDefault();
        drop.classList.add("over");
      },
      ondragleave: () => drop.classList.remove("over"),
      ondrop: (e) => {
        e.preventDefault();
        drop.classList.remove("over");
        score(e.dataTransfer.files[0]);
      },
    },
    "Drop a photo here, or ",
    h("label", { for: "try-file", class: "link" }, "choose one"),
    input,
    ".",
  );
  const promote = h(
    "a",
    { href: `#/p/${encodeURIComponent(model)}/training` },
    "Promote a version on the project's Training page",
  );
  container.replaceChildren(
    ...[
      askable ? h("label", { class: "inline" }, "Ask ", target) : null,
      askable ? drop : null,
      status,
      askable ? null : h("p", {}, promote, "."),
      result,
    ].filter(Boolean),
  );
}
