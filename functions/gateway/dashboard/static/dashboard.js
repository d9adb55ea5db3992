// The usage dashboard: fetches api/report (rollups only) and draws it with Chart.js.
"use strict";

const COLORS = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6",
  "#f97316", "#64748b", "#ec4899", "#84cc16"];
const charts = {};
const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  Object.assign(node, attrs || {});
  return node;
}

function table(id, columns, rows) {
  const t = document.getElementById(id);
  t.replaceChildren();
  const head = el("tr");
  columns.forEach(([label]) => head.append(el("th", label)));
  t.append(head);
  rows.forEach((row) => {
    const tr = el("tr");
    columns.forEach(([, cell]) => {
      const value = cell(row);
      const td = el("td");
      if (value instanceof Node) td.append(value); else td.textContent = value;
      tr.append(td);
    });
    t.append(tr);
  });
  if (!rows.length) {
    const empty = el("tr");
    empty.append(el("td", "No usage in this range.", { colSpan: columns.length }));
    t.append(empty);
  }
}

function dayLabel(report) {
  const busy = new Set();
  report.series.forEach((s) => s.requests.forEach((n, i) => { if (n) busy.add(i); }));
  const step = Math.max(1, Math.ceil(report.days.length / 15));
  return (value, index) => (busy.has(index) || index % step === 0 ? report.days[index] : "");
}

function draw(id, report, metric) {
  const datasets = report.series.map((s, i) => ({
    label: s.name, data: s[metric], backgroundColor: COLORS[i % COLORS.length], stack: "all",
  }));
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(document.getElementById(id), {
    type: "bar",
    data: { labels: report.days, datasets },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        // Every day with traffic keeps its date label (Chart.js's auto-skip could drop the
        // only one), and about 15 others are labelled, evenly spread.
        x: { stacked: true, ticks: { autoSkip: false, maxRotation: 60, callback: dayLabel(report) } },
        y: { stacked: true, beginAtZero: true },
      },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

// The budget bar: the filled part is what is USED this month, the grey part what is left;
// the words beside it say both, so the bar never has to be guessed.
function budget(row) {
  if (row.monthly_tokens === null) return "–";
  const used = Math.min(100, (100 * row.used_tokens) / Math.max(1, row.monthly_tokens));
  const percent = Math.round(used);
  const span = el("span", `${fmt(row.remaining_tokens)} left`, { className: "budget" });
  const caption = `${fmt(row.used_tokens)} of ${fmt(row.monthly_tokens)} used (${percent}%)`;
  const meter = el("span", undefined, { className: "meter", title: caption });
  meter.setAttribute("role", "meter");
  meter.setAttribute("aria-label", caption);
  meter.append(el("i", undefined, { style: `width:${used}%` }));
  span.append(meter, el("small", `${percent}% used`));
  return span;
}

// Prompt tokens the model servers found in their prefix cache, of all prompt tokens.
function hitRate(r) {
  return r.prompt_tokens ? `${((100 * (r.cached_tokens || 0)) / r.prompt_tokens).toFixed(1)} %` : "–";
}

function render(report) {
  const t = report.totals;
  const set = (id, v) => { document.getElementById(id).textContent = fmt(v); };
  set("total-requests", t.requests);
  set("total-tokens", t.total_tokens);
  set("total-prompt", t.prompt_tokens);
  set("total-completion", t.completion_tokens);
  set("total-errors", t.errors);
  set("total-rate-limited", t.rate_limited);
  document.getElementById("total-cache-hit").textContent = hitRate(t);
  draw("chart-tokens", report, "tokens");
  draw("chart-requests", report, "requests");
  const tops = [["Name", (r) => r.name], ["Requests", (r) => fmt(r.requests)],
    ["Tokens", (r) => fmt(r.total_tokens)], ["Errors", (r) => fmt(r.errors)],
    ["Rate-limited", (r) => fmt(r.rate_limited)], ["Cache hit", hitRate]];
  table("top-keys", tops, report.top_keys);
  table("top-models", tops, report.top_models);
  table("keys", [
    ["Key", (r) => `${r.name} (${r.key_id})`], ["Owner", (r) => r.owner],
    ["Status", (r) => r.status], ["RPM", (r) => fmt(r.rpm)], ["TPM", (r) => fmt(r.tpm)],
    ["Monthly budget", (r) => fmt(r.monthly_tokens)],
    [`Used (${report.keys.length ? report.keys[0].month : "month"})`, (r) => fmt(r.used_tokens)],
    ["Budget left (bar: used)", budget],
  ], report.keys);
}

async function load() {
  const form = new FormData(document.getElementById("controls"));
  const params = new URLSearchParams();
  for (const [name, value] of form) if (value) params.set(name, value);
  const status = document.getElementById("status");
  status.dataset.state = "loading";
  status.textContent = "Loading…";
  try {
    const response = await fetch(`api/report?${params}`);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    document.getElementById("start").value = body.start;
    document.getElementById("end").value = body.end;
    params.set("start", body.start);
    params.set("end", body.end);
    document.getElementById("csv").href = `api/usage.csv?${params}`;
    render(body);
    status.textContent = `${body.start} to ${body.end}, by ${body.split}: ` +
      `${fmt(body.totals.requests)} requests, ${fmt(body.totals.total_tokens)} tokens`;
    status.dataset.state = "loaded";
  } catch (error) {
    status.textContent = `Could not load usage: ${error.message}`;
    status.dataset.state = "error";
  }
}

document.getElementById("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
document.getElementById("split").addEventListener("change", load);
load();
