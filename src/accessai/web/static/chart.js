// Credits spent per day as an inline SVG bar chart, built with DOM calls (no
// markup strings, no inline styles), so it works under a strict CSP.
const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

// The last `days` UTC days, oldest first, with 0 for days without spending.
export function fillDays(perDay, days, today = new Date()) {
  const byDay = new Map(perDay.map((row) => [row.day, row.credits]));
  const out = [];
  for (let i = days - 1; i >= 0; i -= 1) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    const key = isoDay(d);
    out.push({ day: key, credits: byDay.get(key) || 0 });
  }
  return out;
}

// Gridlines at a round step (1, 2 or 5 times a power of ten), about four of them.
function axis(largest) {
  const raw = Math.max(largest, 10) / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return { step, max: Math.ceil(Math.max(largest, 10) / step) * step };
}

// Sized to its container (in CSS pixels), so labels stay readable on a phone.
export function drawChart(container, series) {
  const width = Math.max(280, Math.round(container.clientWidth || 560));
  const height = width < 480 ? 180 : 200;
  const pad = { top: 16, right: 8, bottom: 28, left: 36 };
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const { max, step: tick } = axis(Math.max(...series.map((p) => p.credits)));
  const step = innerW / series.length;
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "Bar chart of credits spent per day",
    class: "chart-svg",
    preserveAspectRatio: "xMidYMid meet",
  });
  for (let value = 0; value <= max; value += tick) {
    const y = pad.top + innerH * (1 - value / max);
    svg.append(el("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid-line" }));
    svg.append(el("text", { x: pad.left - 6, y: y + 4, class: "axis-label", "text-anchor": "end" }, String(value)));
  }
  // Label every few days counting back from today, so today always has one.
  const every = Math.ceil(series.length / Math.max(2, Math.floor(innerW / 64)));
  series.forEach((point, i) => {
    const h = (point.credits / max) * innerH;
    const x = pad.left + i * step + step * 0.18;
    const bar = el("rect", {
      x, y: pad.top + innerH - h, width: step * 0.64, height: Math.max(h, 0), rx: 3,
      class: point.credits > 0 ? "bar" : "bar empty",
    });
    bar.append(el("title", {}, `${point.day}: ${point.credits} credits`));
    svg.append(bar);
    if ((series.length - 1 - i) % every === 0) {
      svg.append(el("text", { x: x + step * 0.32, y: height - 8, class: "axis-label", "text-anchor": "middle" }, point.day.slice(5)));
    }
  });
  container.replaceChildren(svg);
}
