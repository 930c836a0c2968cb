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

// Sized to its container (in CSS pixels), so labels stay readable on a phone.
export function drawChart(container, series) {
  const width = Math.max(280, Math.round(container.clientWidth || 560));
  const height = width < 480 ? 180 : 200;
  const pad = { top: 16, right: 8, bottom: 28, left: 36 };
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const max = Math.max(10, ...series.map((p) => p.credits));
  const step = innerW / series.length;
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": "Bar chart of credits spent per day",
    class: "chart-svg",
    preserveAspectRatio: "xMidYMid meet",
  });
  for (const frac of [0, 0.5, 1]) {
    const y = pad.top + innerH * (1 - frac);
    svg.append(el("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid-line" }));
    svg.append(el("text", { x: pad.left - 6, y: y + 4, class: "axis-label", "text-anchor": "end" }, String(Math.round(max * frac))));
  }
  series.forEach((point, i) => {
    const h = (point.credits / max) * innerH;
    const x = pad.left + i * step + step * 0.18;
    const bar = el("rect", {
      x, y: pad.top + innerH - h, width: step * 0.64, height: Math.max(h, 0), rx: 3,
      class: point.credits > 0 ? "bar" : "bar empty",
    });
    bar.append(el("title", {}, `${point.day}: ${point.credits} credits`));
    svg.append(bar);
    if (i % Math.ceil(series.length / 7) === 0 || i === series.length - 1) {
      svg.append(el("text", { x: x + step * 0.32, y: height - 8, class: "axis-label", "text-anchor": "middle" }, point.day.slice(5)));
    }
  });
  container.replaceChildren(svg);
}
