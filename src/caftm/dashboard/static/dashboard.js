// caftm dashboard: polls the JSON API and draws with uPlot (vendored, no network needed).
// Times are UTC, 24 h, as in the event log. A null in a series is a gap where nothing ran
// (a move, a pause): uPlot breaks its line there (spanGaps false); an undefined value only
// aligns two series on one x axis and is stepped over.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const MOVE_FILL = "rgba(31,119,180,0.22)", PAUSE_FILL = "rgba(0,0,0,0.13)";
const state = { selected: null, pollMs: 1000, charts: {}, view: null, busy: false,
  tags: { jobs: null, view: null } };
window.caftm = state; // for a look from the browser's console (and the browser tests)

function $(id) { return document.getElementById(id); }

function fmt(x, digits) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  if (digits !== undefined) return x.toFixed(digits);
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a === 0) return "0";
  return x.toPrecision(3);
}

// "2026-06-15 18:00 UTC": how the page writes a time (seconds since the epoch)
function utcText(seconds) {
  const iso = new Date(seconds * 1000).toISOString();
  return iso.slice(0, 10) + " " + iso.slice(11, 16) + " UTC";
}

function setValue(id, value, text) {
  const el = $(id);
  el.textContent = text !== undefined ? text : fmt(value);
  el.dataset.value = value === null || value === undefined ? "" : String(value);
}

// GET url; null when the server answers 304 (what we hold, tagged `tag`, is current)
async function getJSON(url, key) {
  // a request that hangs must not stop the polling: give up after 15 s and try again
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 15000);
  const headers = state.tags[key] ? { "If-None-Match": state.tags[key] } : {};
  try {
    const response = await fetch(url, { cache: "no-store", credentials: "same-origin",
      signal: abort.signal, headers });
    if (response.status === 304) return null;
    if (!response.ok) {
      let detail = String(response.status);
      try { detail = (await response.json()).error || detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    const data = await response.json();
    state.tags[key] = response.headers.get("ETag");
    return data;
  } finally {
    clearTimeout(timer);
  }
}

// -- the job list: rows are focusable; Enter/Space select, arrows move and select ------------
function jobRow(job) {
  const tr = document.createElement("tr");
  tr.dataset.name = job.name;
  tr.dataset.kind = job.kind;
  tr.tabIndex = 0;
  for (const text of [job.name, job.status, job.site, fmt(job.carbon_g)]) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  tr.onclick = () => select(job.kind, job.name);
  return tr;
}

function renderJobs(data) {
  $("ledger").textContent = data.ledger;
  state.pollMs = data.poll_ms || state.pollMs;
  const body = $("jobs").tBodies[0];
  const focused = document.activeElement && body.contains(document.activeElement)
    ? document.activeElement.dataset.name : null;
  body.replaceChildren(...data.jobs.map(jobRow));
  markSelected();
  if (focused !== null) {
    const again = rowOf(focused);
    if (again) again.focus();
  }
  if (!state.selected && data.jobs.length) select(data.jobs[0].kind, data.jobs[0].name);
}

function rowOf(name) {
  return [...$("jobs").tBodies[0].rows].find(tr => tr.dataset.name === name) || null;
}

function markSelected() {
  for (const tr of $("jobs").tBodies[0].rows) {
    const on = state.selected !== null && tr.dataset.name === state.selected.name;
    tr.classList.toggle("selected", on);
    tr.setAttribute("aria-selected", on ? "true" : "false");
  }
}

function onListKey(event) {
  const tr = event.target.closest("tr");
  if (!tr || !tr.dataset.name) return;
  let target = null;
  if (event.key === "Enter" || event.key === " ") target = tr;
  else if (event.key === "ArrowDown") target = tr.nextElementSibling;
  else if (event.key === "ArrowUp") target = tr.previousElementSibling;
  else if (event.key === "Home") target = tr.parentElement.firstElementChild;
  else if (event.key === "End") target = tr.parentElement.lastElementChild;
  if (!target) return;
  event.preventDefault();
  target.focus();
  select(target.dataset.kind, target.dataset.name);
}

function fromHash() {
  const m = location.hash.match(/^#(job|run)=(.+)$/);
  return m ? { kind: m[1], name: decodeURIComponent(m[2]) } : null;
}

function select(kind, name) {
  if (state.selected && state.selected.kind === kind && state.selected.name === name) return;
  state.selected = { kind, name };
  state.tags.view = null;
  for (const key of Object.keys(state.charts)) { state.charts[key].destroy(); }
  state.charts = {};
  const hash = "#" + kind + "=" + encodeURIComponent(name);
  if (location.hash !== hash) history.replaceState(null, "", hash);
  markSelected();
  tick();
}

// -- charts ----------------------------------------------------------------------------------
// x axis ticks: 24 h UTC, the date under the first tick of each day
function utcTicks(u, splits, axisIdx, space, incr) {
  let day = "";
  return splits.map(s => {
    if (s === null) return null;
    const iso = new Date(s * 1000).toISOString();
    const date = iso.slice(5, 10);
    if (incr >= 86400) return date;
    const clock = incr < 60 ? iso.slice(11, 19) : iso.slice(11, 16);
    const text = date !== day ? clock + "\n" + date : clock;
    day = date;
    return text;
  });
}

const X_SERIES = { label: "time (UTC)", value: (u, v) => v === null || v === undefined ? "—"
  : utcText(v) };
const X_AXIS = { label: "time (UTC)", values: utcTicks, space: 64, size: 56 };

// the bands (moves, pauses) of the view, as {a, b, fill, line}; b null: open (ongoing)
function bandsOf(v) {
  return v.move_marks.map(m => ({ a: m.left, b: m.arrived, fill: MOVE_FILL, line: "#1f77b4",
    open: m.open }))
    .concat(v.pause_marks.map(p => ({ a: p.start, b: p.end, fill: PAUSE_FILL, open: p.open })));
}

// the x range: the data, widened to the bands (a pause until 18:00 is shown up to 18:00)
function xRange(getBands) {
  return (u, min, max) => {
    if (min === null || max === null) return [min, max];
    let hi = max;
    for (const b of getBands()) {
      if (b.b !== null && b.b > hi) hi = b.b;
      if (b.b === null) hi = Math.max(hi, b.a + Math.max(0.05 * (max - min), 600));
    }
    return min === hi ? [min - 1800, hi + 1800] : [min, hi];
  };
}

function bandPlugin(getBands) {
  return { hooks: { drawClear: [u => {
    const ctx = u.ctx, drawn = [];
    ctx.save();
    for (const b of getBands()) {
      const x0 = u.valToPos(b.a, "x", true);
      const x1 = b.b === null ? u.bbox.left + u.bbox.width : u.valToPos(b.b, "x", true);
      ctx.fillStyle = b.fill;
      ctx.fillRect(x0, u.bbox.top, Math.max(x1 - x0, 2), u.bbox.height);
      drawn.push({ a: b.a, b: b.b, x0, x1, open: b.open });
      if (b.line) {
        ctx.strokeStyle = b.line;
        ctx.setLineDash([4, 4]);
        ctx.beginPath(); ctx.moveTo(x0, u.bbox.top); ctx.lineTo(x0, u.bbox.top + u.bbox.height);
        ctx.stroke(); ctx.setLineDash([]);
      }
    }
    ctx.restore();
    u.drawnBands = drawn;
  }] } };
}

function sizeOf(el) {
  const width = Math.max(Math.floor(el.getBoundingClientRect().width) - 2, 120);
  return { width, height: width < 560 ? 200 : 240 };
}

function chart(key, opts, data) {
  const el = $("chart-" + key);
  const existing = state.charts[key];
  if (existing && existing.series.length === opts.series.length) {
    existing.setData(data);
    return;
  }
  if (existing) existing.destroy();
  Object.assign(opts, sizeOf(el));
  opts.tzDate = ts => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  opts.series[0] = X_SERIES;
  opts.axes[0] = X_AXIS;
  state.charts[key] = new uPlot(opts, data, el);
}

function resize() {
  for (const key of Object.keys(state.charts)) {
    const u = state.charts[key], size = sizeOf($("chart-" + key));
    if (size.width !== u.width || size.height !== u.height) u.setSize(size);
  }
}

function outlookChart(v) {
  const o = v.outlook.filter(s => s.t.length);
  const xs = [...new Set(o.flatMap(s => s.t))].sort((a, b) => a - b);
  const series = [{}], data = [xs];
  o.forEach((s, i) => {
    const at = new Map(s.t.map((t, j) => [t, s.v[j]]));
    data.push(xs.map(t => at.has(t) ? at.get(t) : undefined));
    series.push({ label: s.site + (s.kind === "synthetic" ? " (synthetic)" : ""),
      stroke: PALETTE[i % PALETTE.length], width: 2 });
  });
  if (v.threshold_g_per_kwh !== null) {
    data.push(xs.map(() => v.threshold_g_per_kwh));
    series.push({ label: "θ " + fmt(v.threshold_g_per_kwh, 0), stroke: "#d62728",
      dash: [6, 4], width: 1.5 });
  }
  // read at each draw: the chart outlives this view (later views only replace its data)
  const forecast = () => {
    const x = state.charts.outlook ? state.charts.outlook.data[0] : [];
    const now = Date.parse(state.view.now) / 1e3;
    return x.length && Number.isFinite(now)
      ? [{ a: now, b: x[x.length - 1], fill: "rgba(0,0,0,0.05)", line: "#333" }] : [];
  };
  chart("outlook", { series, axes: [{}, { label: "gCO2eq/kWh" }],
    plugins: [bandPlugin(forecast)] }, data);
}

// the path: the site rows in the lower third (left axis), the intensity where the job ran in
// the upper part (right axis): two scales that never share a pixel row
function pathChart(v) {
  const s = v.series, sites = () => state.view.sites;
  // the intensities' own band, padded: [low, high] (gCO2eq/kWh)
  const ciBand = () => {
    const values = state.view.series.intensity.filter(x => x !== null);
    if (!values.length) return [0, 1];
    const lo = Math.min(...values), hi = Math.max(...values), pad = Math.max((hi - lo) * 0.08, 10);
    return [Math.max(lo - pad, 0), hi + pad];
  };
  const ciRange = () => {
    const [low, high] = ciBand();
    return [low - (high - low) * 0.75, high]; // lower 3/7 of the plot left to the sites
  };
  const siteRange = () => [-0.5, -0.5 + sites().length / 0.38]; // sites in the lower 38 %
  chart("path", {
    series: [{}, { label: "site", stroke: "#1f3b2d", width: 3, scale: "site",
      paths: uPlot.paths.stepped({ align: 1 }),
      value: (u, x) => x === null || x === undefined ? "—" : sites()[x] },
    { label: "gCO2eq/kWh where it ran", stroke: "#ff7f0e", scale: "ci", width: 1.5,
      points: { show: true, size: 4 } }],
    scales: { x: { time: true, range: xRange(() => bandsOf(state.view)) },
      site: { range: siteRange }, ci: { range: ciRange } },
    axes: [{}, { scale: "site", splits: () => sites().map((_, i) => i),
      values: (u, vals) => vals.map(x => sites()[x] || ""), size: 60, label: "site" },
    { scale: "ci", side: 1, label: "gCO2eq/kWh", grid: { show: false },
      values: (u, vals) => vals.map(x => x >= ciBand()[0] - 1e-9 ? fmt(x, 0) : "") }],
    plugins: [bandPlugin(() => bandsOf(state.view))],
  }, [s.t, s.site, s.intensity]);
}

function gpuChart(v) {
  const s = v.series, unit = v.gpu.unit || "";
  chart("gpu", {
    series: [{}, { label: "setting " + unit, stroke: "#9467bd", width: 2, scale: "set",
      paths: uPlot.paths.stepped({ align: 1 }) },
    { label: "power W", stroke: "#2ca02c", width: 1, scale: "W" }],
    scales: { x: { time: true, range: xRange(() => bandsOf(state.view)) } },
    axes: [{}, { scale: "set", label: unit }, { scale: "W", side: 1, label: "W" }],
    plugins: [bandPlugin(() => bandsOf(state.view))],
  }, [s.t, s.setting, s.power_w]);
}

// this job's carbon so far (its own times, gaps as null) and the carbon-agnostic estimate on
// the times of a run without pauses or moves (its own x values, undefined elsewhere)
function carbonChart(v) {
  const s = v.series, a = v.agnostic_series;
  const xs = [...new Set([...s.t, ...a.t])].sort((p, q) => p - q);
  chart("carbon", {
    series: [{}, { label: "this job, gCO2eq", stroke: "#2ca02c", width: 2 },
      { label: "carbon-agnostic (estimated), gCO2eq", stroke: "#d62728", width: 1.5,
        dash: [6, 4] }],
    scales: { x: { time: true, range: xRange(() => bandsOf(state.view)) } },
    axes: [{}, { label: "gCO2eq" }],
    plugins: [bandPlugin(() => bandsOf(state.view))],
  }, [xs, alignTo(xs, s.t, s.carbon_cum), alignTo(xs, a.t, a.carbon_cum)]);
}

// one series (times t, values v) on the merged, sorted x values xs: its own values; between two
// of its points undefined (joined over), or null where a gap (a null of its own) is next to it,
// so no line crosses a gap whatever the other series' x values
function alignTo(xs, t, v) {
  const out = new Array(xs.length);
  let j = 0;
  for (let i = 0; i < xs.length; i++) {
    while (j < t.length && t[j] < xs[i]) j++;
    if (j < t.length && t[j] === xs[i]) out[i] = v[j];
    else if (j === 0 || j === t.length) out[i] = undefined;
    else out[i] = v[j - 1] === null || v[j] === null ? null : undefined;
  }
  return out;
}

// -- the view ----------------------------------------------------------------------------------
function renderEvents(v) {
  const body = $("events").tBodies[0];
  body.replaceChildren();
  for (const e of v.events) {
    const tr = document.createElement("tr");
    for (const text of [e.time.replace("T", " ").slice(0, 19), e.from, e.to, e.site,
      fmt(e.intensity, 0), fmt(e.setting, 0), e.reason]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  $("events-total").textContent = "(" + v.events_total + " in all, newest first)";
}

function render(v) {
  state.view = v;
  $("job").hidden = false;
  $("name").textContent = v.kind + " " + v.name;
  const labels = $("labels");
  labels.replaceChildren();
  if (v.simulated) labels.insertAdjacentHTML("beforeend", '<span class="label">SIMULATED GPU</span>');
  if (v.synthetic) labels.insertAdjacentHTML("beforeend",
    '<span class="label synthetic">SYNTHETIC intensities</span>');
  setValue("site", v.site, v.site || "—");
  setValue("status", v.status, v.status);
  setValue("state", v.state, v.state || "—");
  $("state").className = "v state-" + (v.state || "none");
  $("state-note").textContent = v.pause_until_text && v.status === "paused"
    ? "until " + v.pause_until_text : "";
  setValue("moves", v.moves, String(v.moves));
  setValue("pauses", v.pauses, String(v.pauses));
  setValue("setting", v.gpu.setting,
    v.gpu.setting === null ? "default" : fmt(v.gpu.setting, 0) + " " + v.gpu.unit);
  $("setting-note").textContent = v.gpu.since ? "since " + v.gpu.since : "";
  setValue("power", v.gpu.power_w, fmt(v.gpu.power_w, 0) + " W");
  setValue("energy", v.totals.energy_j, fmt(v.totals.energy_j / 3.6e6 * 1000) + " Wh");
  setValue("carbon", v.totals.carbon_g);
  setValue("agnostic", v.totals.agnostic_g);
  const a = v.totals.agnostic_g, measured = v.totals.agnostic_method.startsWith("measured");
  $("saving").textContent = a ? "saved " + fmt(100 * (1 - v.totals.carbon_g / a), 1) + " % " +
    (measured ? "(measured twin)" : "(estimate: credits moves and pauses)") : "";
  setValue("windows", v.totals.windows, String(v.totals.windows));
  setValue("steps", v.totals.steps, String(v.totals.steps));
  $("message").textContent = v.message +
    (v.pause_until_text && v.status === "paused" ? " (paused until " + v.pause_until_text + ")"
      : "");
  $("method").textContent = "Carbon-agnostic run (the card): " + v.totals.agnostic_method +
    ". The dashed line: the estimate, on the times of a run without pauses or moves.";
  $("plan").hidden = !v.plan;
  $("plan-text").textContent = v.plan
    ? v.plan.summary + (v.plan.deadline ? ` (deadline ${v.plan.deadline})` : "")
    : "";
  outlookChart(v); pathChart(v); gpuChart(v); carbonChart(v);
  renderEvents(v);
}

async function tick() {
  if (state.busy) return;
  state.busy = true;
  try {
    const jobs = await getJSON("api/jobs", "jobs");
    if (jobs !== null) renderJobs(jobs);
    if (state.selected) {
      const sel = state.selected;
      const param = (sel.kind === "run" ? "run=" : "job=") + encodeURIComponent(sel.name);
      const data = await getJSON("api/view?" + param, "view");
      if (data !== null && sel === state.selected) {
        render(data.view);
        document.body.dataset.mark = data.mark;
        document.body.dataset.rendered = String(Date.now());
      }
    }
    $("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  } catch (err) {
    $("updated").textContent = "update failed: " + err.message;
  } finally {
    state.busy = false;
  }
}

function start() {
  window.addEventListener("resize", resize);
  new ResizeObserver(resize).observe($("job"));
  $("jobs").tBodies[0].addEventListener("keydown", onListKey);
  window.addEventListener("hashchange", () => {
    const wanted = fromHash();
    if (wanted) select(wanted.kind, wanted.name);
  });
  state.selected = fromHash();
  tick().then(() => {
    const loop = () => { tick().finally(() => setTimeout(loop, state.pollMs)); };
    setTimeout(loop, state.pollMs);
  });
}

start();
