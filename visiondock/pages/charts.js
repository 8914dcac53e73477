// Small SVG charts for the dashboard: lines (PR curves, training curves), grouped bars
// (per-class metrics, images per tag, histograms). Each chart is an element with an SVG and
// an HTML legend; every point or bar carries its value in a <title> (the tooltip) and in
// data-value, so what is drawn can be read back.

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = [
  "#2f6fdd",
  "#e8590c",
  "#2b8a3e",
  "#c2255c",
  "#7048e8",
  "#0b7285",
  "#f08c00",
  "#5c940d",
  "#a61e4d",
  "#364fc7",
  "#087f5b",
  "#862e9c",
];

function svgElement(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

export function format(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits);
}

function ticks(low, high, count = 5) {
  const step = (high - low) / count;
  return Array.from({ length: count + 1 }, (_, i) => low + i * step);
}

// The chart in words, for screen readers: what it plots against what, and its series (the legend beside it
// gives each one's figure).
function describe(yLabel, xLabel, names) {
  const what = `${yLabel || "values"}${xLabel ? ` against ${xLabel}` : ""}`;
  return names.length ? `${what}: ${names.join(", ")}` : what;
}

function frame(width, height, margin, xDomain, yDomain, xLabel, yLabel, label) {
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  const x = (v) =>
    margin.left + ((v - xDomain[0]) / (xDomain[1] - xDomain[0] || 1)) * (width - margin.left - margin.right);
  const y = (v) =>
    height -
    margin.bottom -
    ((v - yDomain[0]) / (yDomain[1] - yDomain[0] || 1)) * (height - margin.top - margin.bottom);
  const yTicks = ticks(...yDomain);
  // Whole numbers (counts) without decimals; fractions with two.
  const yDigits = yDomain[1] - yDomain[0] > 5 || yTicks.every((tick) => Number.isInteger(tick)) ? 0 : 2;
  for (const tick of yTicks) {
    svg.append(
      svgElement("line", { class: "grid-line", x1: margin.left, x2: width - margin.right, y1: y(tick), y2: y(tick) }),
    );
    svg.append(svgElement("text", { x: margin.left - 6, y: y(tick) + 4, "text-anchor": "end" }, format(tick, yDigits)));
  }
  svg.append(
    svgElement("line", { class: "axis", x1: margin.left, x2: margin.left, y1: margin.top, y2: height - margin.bottom }),
  );
  svg.append(
    svgElement("line", {
      class: "axis",
      x1: margin.left,
      x2: width - margin.right,
      y1: height - margin.bottom,
      y2: height - margin.bottom,
    }),
  );
  if (xLabel)
    svg.append(svgElement("text", { x: (width + margin.left) / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  if (yLabel)
    svg.append(
      svgElement(
        "text",
        {
          x: 12,
          y: (height - margin.bottom + margin.top) / 2,
          "text-anchor": "middle",
          transform: `rotate(-90 12 ${(height - margin.bottom + margin.top) / 2})`,
        },
        yLabel,
      ),
    );
  return { svg, x, y };
}

function legend(entries) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const entry of entries) {
    const item = document.createElement("span");
    item.className = "legend-item";
    item.dataset.series = entry.name;
    if (entry.value !== undefined) item.dataset.value = String(entry.value);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = entry.color;
    item.append(swatch, document.createTextNode(entry.label));
    box.append(item);
  }
  return box;
}

// Whole numbers from `low` to `high`, at most `count` of them, evenly spread (epochs on an axis).
function integerTicks(low, high, count = 6) {
  const step = Math.max(1, Math.ceil((high - low) / (count - 1)));
  const ticks = [];
  for (let tick = low; tick < high; tick += step) ticks.push(tick);
  return [...ticks, high];
}

// series: [{name, points: [[x, y], ...], legend: "text", value}]; xIntegers: x counts something (epochs): the
// axis runs from the first to the last with whole-number ticks.
export function lineChart({
  series,
  xDomain,
  yDomain,
  xLabel,
  yLabel,
  width = 520,
  height = 300,
  dots = false,
  xIntegers = false,
}) {
  const container = document.createElement("div");
  container.className = "chart line-chart";
  const margin = { top: 12, right: 14, bottom: 36, left: 46 };
  const allX = series.flatMap((s) => s.points.map((p) => p[0]));
  const allY = series.flatMap((s) => s.points.map((p) => p[1]));
  if (xIntegers) xDomain = xDomain || [Math.min(...allX), Math.max(...allX, Math.min(...allX) + 1)];
  xDomain = xDomain || [Math.min(...allX, 0), Math.max(...allX, 1)];
  yDomain = yDomain || [Math.min(...allY, 0), Math.max(...allY, 1)];
  const label = describe(
    yLabel,
    xLabel,
    series.map((one) => one.legend || one.name),
  );
  const { svg, x, y } = frame(width, height, margin, xDomain, yDomain, xLabel, yLabel, label);
  const xTicks = xIntegers ? integerTicks(...xDomain) : xDomain;
  for (const tick of xTicks) {
    svg.append(
      svgElement(
        "text",
        { x: x(tick), y: height - margin.bottom + 14, "text-anchor": "middle" },
        format(tick, xIntegers || xDomain[1] - xDomain[0] > 5 ? 0 : 2),
      ),
    );
  }
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const path = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    const line = svgElement("path", {
      d: path,
      fill: "none",
      stroke: color,
      "stroke-width": 2,
      "data-series": s.name,
      ...(s.dashed ? { "stroke-dasharray": "5 4" } : {}),
    });
    line.append(svgElement("title", {}, s.legend || s.name));
    svg.append(line);
    if (dots) {
      for (const [px, py] of s.points) {
        const dot = svgElement("circle", {
          cx: x(px),
          cy: y(py),
          r: s.points.length > 30 ? 1.5 : 3,
          fill: color,
          "data-series": s.name,
          "data-x": px,
          "data-value": py,
        });
        dot.append(svgElement("title", {}, `${s.name} ${xLabel || "x"} ${format(px, 2)}: ${format(py)}`));
        svg.append(dot);
      }
    }
  });
  container.append(
    svg,
    legend(
      series.map((s, i) => ({
        name: s.name,
        label: s.legend || s.name,
        value: s.value,
        color: s.color || PALETTE[i % PALETTE.length],
      })),
    ),
  );
  return container;
}

// categories: ["cat", ...]; series: [{name, values: [..one per category..]}]
export function barChart({ categories, series, yDomain, yLabel, width = 520, height = 280 }) {
  const container = document.createElement("div");
  container.className = "chart bar-chart";
  const margin = { top: 12, right: 10, bottom: 48, left: 46 };
  const values = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  yDomain = yDomain || [0, Math.max(1, ...values)];
  const label = describe(
    yLabel,
    `${categories.join(", ")}`,
    series.map((one) => one.legend || one.name),
  );
  const { svg, y } = frame(width, height, margin, [0, 1], yDomain, null, yLabel, label);
  const band = (width - margin.left - margin.right) / Math.max(categories.length, 1);
  const bar = (band * 0.8) / Math.max(series.length, 1);
  categories.forEach((category, c) => {
    const left = margin.left + c * band + band * 0.1;
    const label = category.length > 12 ? `${category.slice(0, 11)}…` : category;
    svg.append(
      svgElement("text", { x: left + band * 0.4, y: height - margin.bottom + 14, "text-anchor": "middle" }, label),
    );
    series.forEach((s, i) => {
      const value = s.values[c];
      if (value === null || value === undefined) return;
      const top = y(Math.max(value, yDomain[0]));
      const rect = svgElement("rect", {
        x: left + i * bar,
        y: top,
        width: Math.max(bar - 2, 1),
        height: Math.max(y(yDomain[0]) - top, 0),
        fill: s.color || PALETTE[i % PALETTE.length],
        "data-series": s.name,
        "data-category": category,
        "data-value": value,
      });
      rect.append(svgElement("title", {}, `${category} ${s.name}: ${format(value)}`));
      svg.append(rect);
    });
  });
  container.append(
    svg,
    legend(
      series.map((s, i) => ({
        name: s.name,
        label: s.legend || s.name,
        color: s.color || PALETTE[i % PALETTE.length],
      })),
    ),
  );
  return container;
}
