// caftm dashboard: polls the JSON API and draws with uPlot (vendored, no network needed).
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const state = { selected: null, mark: null, pollMs: 1000, charts: {}, view: null, busy: false };

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

function setValue(id, value, text) {
  const el = $(id);
  el.textContent = text !== undefined ? text : fmt(value);
  el.dataset.value = value === null || value === undefined ? "" : String(value);
}

async function getJSON(url) {
  // a request that hangs must not stop the polling: give up after 15 s and try again
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 15000);
  try {
    const response = await fetch(url, { cache: "no-store", credentials: "same-origin",
      signal: abort.signal });
    if (!response.ok) {
      let detail = String(response.status);
      try { detail = (await response.json()).error || detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

function renderJobs(data) {
  $("ledger").textContent = data.ledger;
  state.pollMs = data.poll_ms || state.pollMs;
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  for (const job of data.jobs) {
    const tr = document.createElement("tr");
    tr.dataset.name = job.name;
    tr.dataset.kind = job.kind;
    if (state.selected && state.selected.name === job.name) tr.className = "selected";
    for (const text of [job.name, job.status, job.site, fmt(job.carbon_g)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.onclick = () => select(job.kind, job.name);
    body.appendChild(tr);
  }
  if (!state.selected && data.jobs.length) select(data.jobs[0].kind, data.jobs[0].name);
}

function select(kind, name) {
  state.selected = { kind, name };
  state.mark = null;
  for (const key of Object.keys(state.charts)) { state.charts[key].destroy(); }
  state.charts = {};
  history.replaceState(null, "", "#" + kind + "=" + encodeURIComponent(name));
  for (const tr of $("jobs").tBodies[0].rows) {
    tr.className = tr.dataset.name === name ? "selected" : "";
  }
  tick();
}

function bands(getBands) {
  return { hooks: { drawClear: [u => {
    const ctx = u.ctx;
    ctx.save();
    for (const b of getBands(u)) {
      const x0 = u.valToPos(b.a, "x", true), x1 = u.valToPos(b.b, "x", true);
      ctx.fillStyle = b.color;
      ctx.fillRect(x0, u.bbox.top, Math.max(x1 - x0, 2), u.bbox.height);
      if (b.line) {
        ctx.strokeStyle = b.line;
        ctx.setLineDash([4, 4]);
        ctx.beginPath(); ctx.moveTo(x0, u.bbox.top); ctx.lineTo(x0, u.bbox.top + u.bbox.height);
        ctx.stroke(); ctx.setLineDash([]);
      }
    }
    ctx.restore();
  }] } };
}

function chart(key, opts, data) {
  const el = $("chart-" + key);
  const existing = state.charts[key];
  if (existing && existing.series.length === opts.series.length) {
    existing.setData(data);
    return;
  }
  if (existing) existing.destroy();
  opts.width = Math.max(el.clientWidth - 2, 300);
  opts.height = 220;
  opts.tzDate = ts => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  state.charts[key] = new uPlot(opts, data, el);
}

function outlookChart(v) {
  const o = v.outlook.filter(s => s.t.length);
  if (!o.length) return;
  const xs = [...new Set(o.flatMap(s => s.t))].sort((a, b) => a - b);
  const series = [{}], data = [xs];
  o.forEach((s, i) => {
    const at = new Map(s.t.map((t, j) => [t, s.v[j]]));
    data.push(xs.map(t => at.has(t) ? at.get(t) : null));
    series.push({ label: s.site + (s.kind === "synthetic" ? " (synthetic)" : ""),
      stroke: PALETTE[i % PALETTE.length], width: 2 });
  });
  if (v.threshold_g_per_kwh !== null) {
    data.push(xs.map(() => v.threshold_g_per_kwh));
    series.push({ label: "θ " + fmt(v.threshold_g_per_kwh, 0), stroke: "#d62728",
      dash: [6, 4], width: 1.5 });
  }
  // read at each draw: the chart outlives this view (later views only replace its data)
  const forecast = u => {
    const now = Date.parse(state.view.now) / 1e3, x = u.data[0];
    return x.length ? [{ a: now, b: x[x.length - 1], color: "rgba(0,0,0,0.05)", line: "#333" }]
      : [];
  };
  chart("outlook", {
    series, axes: [{}, { label: "gCO2eq/kWh" }], plugins: [bands(forecast)],
  }, data);
}

function pathChart(v) {
  const s = v.series, sites = () => state.view.sites;
  const shaded = () => {
    const cur = state.view;
    return cur.move_marks.map(m => ({ a: m.left, b: m.arrived, color: "rgba(31,119,180,0.25)",
      line: "#1f77b4" })).concat(cur.pause_marks.map(p => ({ a: p.start, b: p.end,
      color: "rgba(0,0,0,0.12)" })));
  };
  chart("path", {
    series: [{}, { label: "site", stroke: "#1f3b2d", width: 2, scale: "site",
      paths: uPlot.paths.stepped({ align: 1 }), value: (u, x) => x === null ? "—" : sites()[x] },
    { label: "gCO2eq/kWh where it ran", stroke: "#ff7f0e", scale: "ci", width: 1 }],
    scales: { site: { range: () => [-0.5, Math.max(sites().length - 0.5, 0.5)] } },
    axes: [{}, { scale: "site", values: (u, vals) => vals.map(x => Number.isInteger(x) ?
      (sites()[x] || "") : ""), size: 70 }, { scale: "ci", side: 1, label: "gCO2eq/kWh" }],
    plugins: [bands(shaded)],
  }, [s.t, s.site, s.intensity]);
}

function gpuChart(v) {
  const s = v.series, unit = v.gpu.unit || "";
  chart("gpu", {
    series: [{}, { label: "setting " + unit, stroke: "#9467bd", width: 2, scale: "set",
      paths: uPlot.paths.stepped({ align: 1 }) },
    { label: "power W", stroke: "#2ca02c", width: 1, scale: "W" }],
    axes: [{}, { scale: "set", label: unit }, { scale: "W", side: 1, label: "W" }],
  }, [s.t, s.setting, s.power_w]);
}

function carbonChart(v) {
  const s = v.series;
  chart("carbon", {
    series: [{}, { label: "this job, gCO2eq", stroke: "#2ca02c", width: 2 },
      { label: "carbon-agnostic, estimated per window, gCO2eq", stroke: "#d62728", width: 1.5,
        dash: [6, 4] }],
    axes: [{}, { label: "gCO2eq" }],
  }, [s.t, s.carbon_cum, s.agnostic_cum]);
}

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
  setValue("moves", v.moves, String(v.moves));
  setValue("pauses", v.pauses, String(v.pauses));
  setValue("setting", v.gpu.setting,
    v.gpu.setting === null ? "default" : fmt(v.gpu.setting, 0) + " " + v.gpu.unit);
  setValue("power", v.gpu.power_w, fmt(v.gpu.power_w, 0) + " W");
  setValue("energy", v.totals.energy_j, fmt(v.totals.energy_j / 3.6e6 * 1000) + " Wh");
  setValue("carbon", v.totals.carbon_g);
  setValue("agnostic", v.totals.agnostic_g);
  const a = v.totals.agnostic_g;
  $("saving").textContent = a ? "saved " + fmt(100 * (1 - v.totals.carbon_g / a), 1) + " %" : "";
  setValue("windows", v.totals.windows, String(v.totals.windows));
  setValue("steps", v.totals.steps, String(v.totals.steps));
  $("message").textContent = v.message + (v.pause_until ? " (paused until " + v.pause_until + ")" : "");
  $("method").textContent = "Carbon-agnostic run (the card): " + v.totals.agnostic_method +
    ". The dashed line: each window's measured energy at the start site " + v.start_site +
    "'s intensity at the same time.";
  outlookChart(v); pathChart(v); gpuChart(v); carbonChart(v);
  renderEvents(v);
}

async function tick() {
  if (state.busy) return;
  state.busy = true;
  try {
    renderJobs(await getJSON("api/jobs"));
    if (state.selected) {
      const sel = state.selected;
      const param = (sel.kind === "run" ? "run=" : "job=") + encodeURIComponent(sel.name);
      const data = await getJSON("api/view?" + param + "&mark=" + encodeURIComponent(state.mark || ""));
      if (!data.unchanged && sel === state.selected) {
        render(data.view);
        state.mark = data.mark;
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

function resize() {
  for (const key of Object.keys(state.charts)) {
    const el = $("chart-" + key);
    state.charts[key].setSize({ width: Math.max(el.clientWidth - 2, 300), height: 220 });
  }
}

function start() {
  window.addEventListener("resize", resize);
  const m = location.hash.match(/^#(job|run)=(.+)$/);
  if (m) state.selected = { kind: m[1], name: decodeURIComponent(m[2]) };
  tick().then(() => {
    const loop = () => { tick().finally(() => setTimeout(loop, state.pollMs)); };
    setTimeout(loop, state.pollMs);
  });
}

start();
