// git exp ui: the dashboard's one script. Every value from notes is untrusted: it reaches the
// page only as text (textContent, text nodes, attribute values set through the DOM), never as
// markup; the server's Content-Security-Policy forbids inline script on top of that.
"use strict";

const ROW_H = 23; // px: .row height + its border
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
  "#31a354", "#756bb1", "#636363"];
const SPARK = "▁▂▃▄▅▆▇█";
const LIVE = new Set(["running", "starting", "pending"]);
const BAND_COLORS = ["0,0,0", "31,119,180", "214,39,40", "44,160,44", "148,103,189"];

const state = {
  token: null, info: {}, version: null, rows: [], byId: new Map(), order: [], items: [], goals: {},
  metrics: [], params: [], selected: [], collapsed: new Set(), plot: null, plotKey: "", curveTimer: null,
  runTimer: null, page: null, marks: [], sort: "", filters: [], folds: null, expanded: new Set(),
};

// -- helpers ---------------------------------------------------------------------------------
function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (key === "style") Object.assign(node.style, value);
    else if (key in node && key !== "href") node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : Number(value.toPrecision(4)).toString();
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function fmtTime(ts) {
  if (typeof ts !== "number") return "";
  const d = new Date(ts * 1000);
  return isNaN(d) ? "?" : d.toISOString().replace("T", " ").slice(0, 19);
}

function fmtDuration(s) {
  if (typeof s !== "number" || !isFinite(s)) return "";
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function fmtSize(n) {
  if (typeof n !== "number") return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function sparkline(values) {
  const known = (values || []).filter((v) => typeof v === "number");
  if (!known.length) return "";
  const lo = Math.min(...known), hi = Math.max(...known), top = SPARK.length - 1;
  return values.map((v) => typeof v !== "number" ? " " : hi <= lo ? SPARK[top >> 1]
    : SPARK[Math.round((v - lo) / (hi - lo) * top)]).join("");
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function act(action, id) {
  const response = await fetch("/api/action", {
    method: "POST", credentials: "same-origin", cache: "no-store",
    headers: { "Content-Type": "application/json", "X-Gitexp-Token": state.token || "" },
    body: JSON.stringify({ action, id }),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function statusCell(status) { return el("span", { class: "status-" + status }, status); }

// -- the experiments table -------------------------------------------------------------------
function columns() {
  const metricCols = state.metrics.filter((m) => m in state.goals).slice(0, 3);
  if (!metricCols.length) metricCols.push(...state.metrics.slice(0, 2));
  const cols = [
    { key: null, title: "", width: 24, cell: (r) => el("input", { type: "checkbox", checked: state.selected.includes(r.id),
      on: { click: (ev) => { ev.stopPropagation(); toggle(r.id); } } }) },
    { key: "name", title: "name", width: 200, cell: (r) => el("a", { href: "#/run/" + encodeURIComponent(r.id) },
      r.name + (r.attempt > 1 ? " #" + r.attempt : "")) },
    { key: "status", title: "status", width: 78, cell: (r) => statusCell(r.status) },
    { key: "group", title: "group", width: 140, cell: (r) => fmt(r.group) },
    { key: null, title: "params", width: 260, cell: (r) => Object.entries(r.params).map(([k, v]) => k + "=" + fmt(v)).join(" ") },
  ];
  for (const m of metricCols) {
    cols.push({ key: m, title: m + (state.goals[m] ? " best" : ""), width: 100,
      cell: (r) => fmt(r.metrics[m] ? (r.metrics[m].best ?? r.metrics[m].last) : null) });
    cols.push({ key: m + ".last", title: m + " last", width: 90, cell: (r) => fmt(r.metrics[m] ? r.metrics[m].last : null) });
  }
  if (metricCols.length) {
    cols.push({ key: null, title: metricCols[0] + " curve", width: 130,
      cell: (r) => el("span", { class: "spark" }, sparkline(r.metrics[metricCols[0]] ? r.metrics[metricCols[0]].spark : [])) });
  }
  cols.push({ key: "duration", title: "duration", width: 70, cell: (r) => fmtDuration(r.duration) });
  cols.push({ key: "created", title: "when", width: 140, cell: (r) => fmtTime(r.created) });
  cols.push({ key: "host", title: "host / target", width: 120, cell: (r) => fmt(r.host || r.target) });
  cols.push({ key: null, title: "alerts", width: 50, cell: (r) => r.alerts ? String(r.alerts) : "" });
  return cols;
}

function renderHead() {
  const head = clear($("thead"));
  for (const col of columns()) {
    const arrow = col.key && state.sort.replace(/^-/, "") === col.key ? (state.sort.startsWith("-") ? " ▴" : " ▾") : "";
    head.appendChild(el("span", { style: { width: col.width + "px" }, title: col.key ? "sort by " + col.key : "",
      on: { click: () => { if (col.key) { state.sort = state.sort === col.key ? "-" + col.key : col.key; $("sort").value = state.sort; applyQuery(); } } } },
    col.title + arrow));
  }
}

function statText(s) {
  if (!s) return "";
  return fmt(s.mean) + (s.std === null || s.std === undefined ? "" : " ± " + fmt(s.std)) + " (n=" + s.n + ")";
}

function foldText(f) {
  const counts = f.n + " finished" + (f.in_progress ? ", " + f.in_progress + " in progress" : "")
    + (f.failed ? ", " + f.failed + " failed" : "") + (f.in_progress || f.failed ? " (not averaged)" : "");
  const metrics = Object.entries(f.metrics).filter(([m]) => state.metrics.indexOf(m) < 3 || m in state.goals)
    .map(([m, s]) => m + " " + statText(s));
  const span = f.duration ? fmtDuration(f.duration.min) + "–" + fmtDuration(f.duration.max) : "";
  return [f.label, counts, ...metrics, span].filter(Boolean).join("  ·  ");
}

function buildFoldItems(rows) {
  const byId = state.folds.bySha, seen = new Set();
  state.items = [];
  for (const row of rows) {
    const f = byId.get(row.id);
    if (!f || seen.has(f.id)) continue;
    seen.add(f.id);
    const members = [...f.runs, ...f.others].map((id) => state.byId.get(id)).filter(Boolean);
    state.items.push({ fold: f, members });
    if (state.expanded.has(f.id)) for (const member of members) state.items.push({ row: member });
  }
  $("table").dataset.folds = String(seen.size);
}

function buildItems() {
  const rows = state.order.map((id) => state.byId.get(id)).filter(Boolean);
  if (state.folds) { buildFoldItems(rows); return; }
  $("table").dataset.folds = "0";
  if (!$("group-by").checked) { state.items = rows.map((row) => ({ row })); return; }
  const groups = new Map();
  for (const row of rows) {
    const g = row.group || "(no group)";
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(row);
  }
  state.items = [];
  for (const [name, members] of groups) {
    state.items.push({ group: name, count: members.length, members });
    if (!state.collapsed.has(name)) for (const row of members) state.items.push({ row });
  }
}

function renderRows() {
  const scroll = $("scroll"), box = clear($("rows"));
  $("spacer").style.height = state.items.length * ROW_H + "px";
  const first = Math.max(0, Math.floor(scroll.scrollTop / ROW_H) - 5);
  const last = Math.min(state.items.length, first + Math.ceil((scroll.clientHeight || 600) / ROW_H) + 10);
  box.style.top = first * ROW_H + "px";
  const cols = columns();
  for (let i = first; i < last; i++) {
    const item = state.items[i];
    if (item.fold !== undefined) { box.appendChild(foldRow(item)); continue; }
    if (item.group !== undefined) {
      box.appendChild(el("div", { class: "row group", on: { click: () => toggleGroup(item) } },
        el("span", { style: { width: "600px" } },
          (state.collapsed.has(item.group) ? "▸ " : "▾ ") + item.group + "  (" + item.count + " runs; click to fold, shift-click to select all)")));
      continue;
    }
    const row = item.row;
    const line = el("div", { class: "row" + (state.selected.includes(row.id) ? " selected" : ""), "data-id": row.id,
      on: { click: () => toggle(row.id) } });
    for (const col of cols) {
      const value = col.cell(row);
      const cell = el("span", { style: { width: col.width + "px" } }, value);
      if (typeof value === "string") cell.title = value;
      line.appendChild(cell);
    }
    box.appendChild(line);
  }
  $("count").textContent = state.order.length + " of " + state.rows.length + " experiments, " + state.selected.length + " selected";
  $("table").dataset.rows = String(state.order.length);
  $("table").dataset.rendered = String(box.childNodes.length);
  $("compare").disabled = state.selected.length !== 2;
}

function foldRow(item) {
  const f = item.fold, done = f.runs;
  const all = done.length > 0 && done.every((id) => state.selected.includes(id));
  const pick = el("input", { type: "checkbox", checked: all, title: "select its finished runs (the band's members)",
    on: { click: (ev) => {
      ev.stopPropagation();
      state.selected = state.selected.filter((id) => !done.includes(id));
      if (!all) state.selected.push(...done);
      if ($("band").value !== state.folds.over[0]) $("band").value = state.folds.over[0];
      selectionChanged(); renderRows();
    } } });
  return el("div", { class: "row group fold", "data-fold": f.id, on: { click: () => {
    if (state.expanded.has(f.id)) state.expanded.delete(f.id); else state.expanded.add(f.id);
    buildItems(); renderRows();
  } } }, el("span", { style: { width: "24px" } }, pick),
  el("span", { style: { width: "1400px" }, title: foldText(f) }, (state.expanded.has(f.id) ? "▾ " : "▸ ") + foldText(f)));
}

async function loadFolds() {
  const over = $("fold").value;
  $("error").textContent = "";
  if (!over) { state.folds = null; buildItems(); renderRows(); return; }
  try {
    const data = await getJSON("/api/folds?over=" + encodeURIComponent(over));
    const bySha = new Map();
    for (const f of data.folds) for (const id of [...f.runs, ...f.others]) bySha.set(id, f);
    state.folds = { over: data.over, folds: data.folds, bySha };
  } catch (err) { $("error").textContent = err.message; state.folds = null; }
  buildItems(); renderRows();
}

function toggleGroup(item) {
  if (window.event && window.event.shiftKey) {
    for (const row of item.members) if (!state.selected.includes(row.id)) state.selected.push(row.id);
    selectionChanged();
  } else {
    if (state.collapsed.has(item.group)) state.collapsed.delete(item.group); else state.collapsed.add(item.group);
  }
  buildItems(); renderRows();
}

function toggle(id) {
  const i = state.selected.indexOf(id);
  if (i >= 0) state.selected.splice(i, 1); else state.selected.push(id);
  selectionChanged();
  renderRows();
}

function selectionChanged() {
  const hash = "#/?sel=" + state.selected.map(encodeURIComponent).join(",");
  if (location.hash.startsWith("#/?") || location.hash === "#/" || location.hash === "") history.replaceState(null, "", hash);
  loadCurves();
}

async function loadTable() {
  const data = await getJSON("/api/experiments");
  state.version = data.version;
  state.rows = data.rows;
  state.byId = new Map(data.rows.map((r) => [r.id, r]));
  state.goals = data.goals; state.metrics = data.metrics; state.params = data.params;
  state.selected = state.selected.filter((id) => state.byId.has(id));
  fillSelect($("metric"), state.metrics, $("metric").value || state.metrics.find((m) => m in state.goals) || state.metrics[0]);
  fillSelect($("band"), [""].concat(state.params), $("band").value);
  fillSelect($("fold"), [""].concat(state.params), $("fold").value);
  if ($("fold").value) await loadFolds();
  await applyQuery(true);
}

function fillSelect(select, values, chosen) {
  const old = Array.from(select.options).map((o) => o.value).join("\n");
  if (old === values.join("\n")) return;
  clear(select);
  for (const v of values) select.appendChild(el("option", { value: v }, v || "(none)"));
  if (chosen !== undefined && values.includes(chosen)) select.value = chosen;
}

async function applyQuery(quiet) {
  state.filters = $("filter").value.trim().split(/\s+/).filter(Boolean);
  state.sort = $("sort").value.trim();
  $("error").textContent = "";
  if (!state.filters.length && !state.sort) {
    state.order = state.rows.slice().sort((a, b) => (b.created || 0) - (a.created || 0)).map((r) => r.id);
  } else {
    const q = new URLSearchParams();
    for (const f of state.filters) q.append("filter", f);
    if (state.sort) q.set("sort", state.sort);
    try {
      state.order = (await getJSON("/api/select?" + q)).ids;
    } catch (err) {
      $("error").textContent = err.message;
      if (!quiet) return;
    }
  }
  renderHead(); buildItems(); renderRows();
}

// -- curves ----------------------------------------------------------------------------------
function curveQuery() {
  const q = new URLSearchParams();
  for (const id of state.selected) q.append("id", id);
  q.set("metric", $("metric").value || "");
  q.set("x", $("xaxis").value);
  q.set("smooth", $("smooth").value);
  if ($("band").value) q.set("band", $("band").value);
  if ($("full").checked) q.set("full", "1");
  return q;
}

async function loadCurves() {
  clearTimeout(state.curveTimer);
  const status = $("curves-status");
  if (!state.selected.length || !$("metric").value) {
    if (state.plot) { state.plot.destroy(); state.plot = null; state.plotKey = ""; }
    clear($("chart")).appendChild(el("p", { class: "muted" }, "select runs in the table to draw their curves"));
    status.textContent = ""; status.dataset.series = "0";
    return;
  }
  const query = curveQuery();
  let data;
  try {
    data = await getJSON("/api/curves?" + query);
  } catch (err) {
    status.textContent = err.message;
    return;
  }
  if (curveQuery().toString() !== query.toString()) return; // the choice changed meanwhile
  drawCurves(data);
  if (data.runs.some((r) => LIVE.has(r.status))) state.curveTimer = setTimeout(loadCurves, 400);
}

function drawCurves(data) {
  const logY = $("logy").checked;
  const keep = (v) => (logY && !(v > 0)) ? null : v;
  const tables = data.runs.map((r) => [r.x, r.y.map(keep)]);
  const series = [{ label: data.x }];
  data.runs.forEach((r, i) => series.push({ label: r.name + " " + r.id.slice(0, 7) + (LIVE.has(r.status) ? " (" + r.status + ")" : ""),
    stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: false } }));
  const bands = [];
  data.bands.forEach((b, k) => {  // mean over the band's finished runs, std filled either side
    const base = series.length, color = BAND_COLORS[k % BAND_COLORS.length];
    tables.push([b.x, b.mean.map(keep), b.mean.map((m, i) => keep(m + b.std[i])), b.mean.map((m, i) => keep(m - b.std[i]))]);
    series.push({ label: b.label, stroke: "rgb(" + color + ")", width: 2.5, spanGaps: true, points: { show: false } });
    series.push({ label: "+std", stroke: "rgba(" + color + ",0.35)", width: 1, spanGaps: true, points: { show: false } });
    series.push({ label: "-std", stroke: "rgba(" + color + ",0.35)", width: 1, spanGaps: true, points: { show: false } });
    bands.push({ series: [base + 1, base + 2], fill: "rgba(" + color + ",0.18)" });
  });
  const aligned = tables.length ? uPlot.join(tables) : [[]];
  const marks = [];
  data.runs.forEach((r, i) => { for (const m of r.marks) marks.push({ ...m, color: m.kind === "alert" ? "#d00" : COLORS[i % COLORS.length] }); });
  const key = [data.metric, data.x, logY, series.map((s) => s.label).join("|")].join("/");
  const status = $("curves-status");
  state.marks = marks; // read by the draw hook
  if (state.plot && state.plotKey === key) {
    state.plot.setData(aligned);
  } else {
    if (state.plot) state.plot.destroy();
    const chart = clear($("chart"));
    const opts = {
      width: Math.max(400, chart.clientWidth - 10), height: 340, series, bands,
      scales: { x: { time: false }, y: { distr: logY ? 3 : 1 } },
      axes: [{ label: data.x === "time" ? "seconds since start" : data.x }, { label: data.metric, size: 60 }],
      legend: { live: true },
      hooks: { draw: [(u) => {
        const ctx = u.ctx; let n = 0;
        ctx.save();
        for (const m of state.marks) {
          const px = u.valToPos(m.x, "x", true);
          if (!(px >= u.bbox.left && px <= u.bbox.left + u.bbox.width)) continue;
          ctx.strokeStyle = m.color; ctx.setLineDash(m.kind === "alert" ? [2, 2] : [6, 3]); ctx.lineWidth = 1;
          ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
          n++;
        }
        ctx.restore();
        status.dataset.marks = String(n);
      }] },
    };
    state.plot = new uPlot(opts, aligned, chart);
    state.plotKey = key;
  }
  const points = data.runs.reduce((sum, r) => sum + r.x.length, 0);
  status.dataset.series = String(data.runs.length);
  status.dataset.bands = String(bands.length);
  status.dataset.bandSeries = String(state.plot.series.length - 1 - data.runs.length);
  status.dataset.points = String(points);
  status.dataset.last = data.runs.map((r) => r.count).join(",");
  status.textContent = data.runs.length + " runs, " + points + " points" + (data.bands.length ? ", " + data.bands.length + " bands" : "")
    + (marks.length ? ", " + marks.length + " marks (checkpoints dashed, alerts dotted red)" : "");
}

// -- live updates ----------------------------------------------------------------------------
async function poll() {
  try {
    const data = await getJSON("/api/running");
    $("live-state").textContent = "live " + new Date().toLocaleTimeString();
    if (data.version !== state.version) { await loadTable(); return; }
    let changed = false;
    for (const row of data.rows) {
      const old = state.byId.get(row.id);
      if (old && JSON.stringify(old) !== JSON.stringify(row)) { Object.assign(old, row); changed = true; }
    }
    if (changed && !$("view-table").hidden) renderRows();
  } catch (err) {
    $("live-state").textContent = "server unreachable: " + err.message;
  } finally {
    setTimeout(poll, 1000);
  }
}

// -- one run ---------------------------------------------------------------------------------
function kvTable(pairs) {
  return el("table", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v instanceof Node ? v : fmt(v)))));
}

function listTable(headers, rows) {
  return el("table", { class: "list" }, el("tr", {}, headers.map((h) => el("th", {}, h))),
    rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c instanceof Node ? c : fmt(c))))));
}

async function showRun(id, vs) {
  const view = $("view-run");
  clearTimeout(state.runTimer);
  let data;
  try {
    data = await getJSON("/api/run?id=" + encodeURIComponent(id));
  } catch (err) {
    clear(view).appendChild(el("p", { class: "error" }, err.message));
    return;
  }
  if (location.hash.indexOf(id) < 0) return;
  const s = data.summary;
  const scrollY = window.scrollY;
  clear(view);
  view.appendChild(el("h2", {}, data.name + "  ", el("span", { class: "muted" }, data.id), "  ", statusCell(data.status)));
  if (data.reason) view.appendChild(el("p", {}, fmt(data.reason)));
  if (state.info.actions) {
    const out = el("span", { class: "muted" });
    const button = (action) => el("button", { on: { click: async () => {
      out.textContent = action + "…";
      try { const r = await act(action, data.id); out.textContent = "exit " + r.code + ": " + r.output; }
      catch (err) { out.textContent = err.message; }
    } } }, action);
    view.appendChild(el("div", { class: "bar" }, button("cancel"), button("resume"), button("retry"), out));
  }
  view.appendChild(kvTable([["group", s.group], ["host", s.host], ["runner", s.runner], ["target", s.target],
    ["created", fmtTime(s.created)], ["started", fmtTime(s.started)], ["ended", fmtTime(s.ended)],
    ["duration", fmtDuration(s.duration)], ["exit code", s.exit_code], ["parent", s.parent], ["attempt", s.attempt]]));
  view.appendChild(el("h3", {}, "params"));
  view.appendChild(kvTable(Object.entries(s.params || {})));
  const metrics = Object.entries(s.metrics || {});
  if (metrics.length) {
    view.appendChild(el("h3", {}, "metrics"));
    view.appendChild(listTable(["metric", "goal", "best", "at step", "last", "at step", "points"],
      metrics.map(([n, m]) => [n, m.goal, m.best, m.best_step, m.last, m.last_step, m.count])));
  }
  // diff against another run
  const others = state.rows.filter((r) => r.id !== data.id);
  const pick = el("select", {}, el("option", { value: "" }, "(compare with…)"),
    others.slice(0, 2000).map((r) => el("option", { value: r.id }, r.name + " " + r.id.slice(0, 7))));
  if (vs) pick.value = vs;
  const diffBox = el("div", {});
  pick.addEventListener("change", () => { location.hash = "#/run/" + data.id + (pick.value ? "?vs=" + pick.value : ""); });
  view.appendChild(el("h3", {}, "compare"));
  view.appendChild(pick);
  view.appendChild(diffBox);
  if (vs) loadDiff(data.id, vs, diffBox);
  view.appendChild(el("h3", {}, "config"));
  view.appendChild(el("pre", {}, JSON.stringify(data.config, null, 2)));
  if (data.timing && Object.keys(data.timing).length) {
    view.appendChild(el("h3", {}, "time"));
    view.appendChild(kvTable(Object.entries(data.timing).map(([k, v]) => [k, typeof v === "number" ? fmt(v) : v])));
  }
  if (data.samples.length || Object.keys(data.live_resources).length) {
    view.appendChild(el("h3", {}, "resources"));
    const peaks = s.resources || {};
    view.appendChild(kvTable(Object.entries(peaks).map(([k, v]) => [k, /rss|mem|ram|disk/.test(k) ? fmtSize(v) : fmt(v)])));
    if (data.samples.length) view.appendChild(resourceChart(data.samples));
  }
  if (data.alerts.length) {
    view.appendChild(el("h3", {}, "alerts"));
    view.appendChild(listTable(["time", "step", "rule", "action", "message"],
      data.alerts.map((a) => typeof a === "object" && a ? [fmtTime(a.time), a.step, a.rule, a.action, a.message] : ["", "", "", "", a])));
  }
  if (data.checkpoints.length) {
    view.appendChild(el("h3", {}, "checkpoints"));
    view.appendChild(listTable(["step", "path", "size", "time"],
      data.checkpoints.map((c) => typeof c === "object" && c ? [c.step, c.path, fmtSize(c.size), fmtTime(c.time)] : ["", c, "", ""])));
  }
  if (data.attempts.length > 1) {
    view.appendChild(el("h3", {}, "attempts"));
    view.appendChild(listTable(["#", "id", "kind", "status", "reason", "host"],
      data.attempts.map((a) => [a.attempt, el("a", { href: "#/run/" + a.id }, a.id.slice(0, 10)), a.kind, a.status, a.reason, a.host])));
  }
  if (data.profile && (data.profile.top_self.length || data.profile.top_total.length)) {
    view.appendChild(el("h3", { id: "profile" }, "profile (" + fmt(data.profile.samples) + " samples)"));
    const pct = (share) => (100 * share).toFixed(1) + "%";
    view.appendChild(listTable(["by own time", "share"], data.profile.top_self.map(([f, share]) => [f, pct(share)])));
    view.appendChild(listTable(["by total time", "share"], data.profile.top_total.map(([f, share]) => [f, pct(share)])));
  }
  if (data.notify) {
    view.appendChild(el("h3", {}, "notifications"));
    view.appendChild(kvTable(Object.entries(data.notify)));
  }
  view.appendChild(el("h3", {}, "facts"));
  view.appendChild(kvTable(Object.entries(data.facts).filter(([k]) => k !== "packages")));
  view.appendChild(el("h3", {}, data.log_tail !== null ? "log (live, last 64 KiB)" : "log tail"));
  const log = el("pre", { id: "log-tail" }, data.log_tail !== null ? data.log_tail : data.note_log_tail);
  view.appendChild(log);
  window.scrollTo(0, scrollY);
  if (LIVE.has(data.status)) state.runTimer = setTimeout(() => { if (state.page === "run") showRun(id, vs); }, 2000);
}

async function loadDiff(a, b, box) {
  try {
    const d = await getJSON("/api/diff?a=" + a + "&b=" + b);
    clear(box);
    box.appendChild(el("p", {}, "A = " + d.a.name + " (" + d.a.id.slice(0, 10) + "), B = " + d.b.name + " (" + d.b.id.slice(0, 10) + ")"));
    box.appendChild(d.params.length ? listTable(["param", "A", "B"], d.params) : el("p", {}, "params: identical"));
    box.appendChild(d.config.length ? listTable(["config", "A", "B"], d.config) : el("p", {}, "config: identical"));
    const pre = el("pre", { class: "diff" });
    for (const line of d.code.split("\n")) {
      pre.appendChild(el("span", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "" }, line + "\n"));
    }
    box.appendChild(el("h3", {}, d.code ? "code (git diff A B)" + (d.code_cut ? ", cut at 1 MiB" : "") : "code: identical"));
    if (d.code) box.appendChild(pre);
  } catch (err) {
    clear(box).appendChild(el("p", { class: "error" }, err.message));
  }
}

function resourceChart(samples) {
  const rows = samples.filter((r) => r && typeof r.time === "number");
  const keys = Object.keys(rows[0] || {}).filter((k) => k === "cpu" || /^gpu\d+_util$/.test(k));
  const box = el("div", { class: "chart" });
  if (!rows.length || !keys.length) return box;
  const t0 = rows[0].time;
  const data = [rows.map((r) => r.time - t0), ...keys.map((k) => rows.map((r) => typeof r[k] === "number" ? r[k] : null))];
  setTimeout(() => new uPlot({ width: Math.max(400, box.clientWidth - 10), height: 200,
    series: [{ label: "s" }, ...keys.map((k, i) => ({ label: k + " %", stroke: COLORS[i % COLORS.length] }))],
    scales: { x: { time: false } } }, data, box), 0);
  return box;
}

// -- queue and hosts -------------------------------------------------------------------------
const QUEUE_HEADERS = ["#", "id", "name", "status", "prio", "params", "where / why"];

function queueRows(report) {
  const rows = [];
  for (const kind of ["queued", "running", "done"]) {
    for (const e of report[kind] || []) {
      const why = e.wait_reason || e.reason || (e.host ? e.host + " since " + fmtTime(e.started) : fmtTime(e.ended || e.enqueued));
      rows.push([e.position || "", el("a", { href: "#/run/" + encodeURIComponent(String(e.id)) }, String(e.id).slice(0, 8)), e.name,
        statusCell(String(e.status)), e.priority, Object.entries(e.params || {}).map(([k, v]) => k + "=" + fmt(v)).join(" "), why]);
    }
  }
  return rows;
}

function resourcesTable(res) {
  res = res || {};
  const gpus = (res.gpus || []).map((g) => [g.index, g.name, fmtSize(g.mem_free) + " free of " + fmtSize(g.mem_total), fmt(g.util) + "% busy"]);
  return el("div", {},
    kvTable([["RAM", fmtSize(res.ram_available) + " available of " + fmtSize(res.ram_total)],
      ["disk", fmtSize(res.disk_free) + " free of " + fmtSize(res.disk_total) + " at " + fmt(res.disk_path)],
      ["CPUs", fmt(res.cpus) + (res.load ? ", load " + fmt(res.load[0]) : "")]]),
    gpus.length ? listTable(["GPU", "model", "memory", "use"], gpus) : el("p", { class: "muted" }, "no GPU nvidia-smi can list"));
}

async function targetsList(view, what) {
  let data;
  try { data = await getJSON("/api/targets"); } catch (err) { view.appendChild(el("p", { class: "error" }, err.message)); return; }
  const far = data.targets.filter((t) => t.host);
  if (!far.length) return;
  view.appendChild(el("h3", {}, "run targets (one ssh round trip each, when you ask)"));
  for (const t of far) {
    const box = el("div", {});
    const button = el("button", { disabled: !!t.refusal, on: { click: async () => {
      clear(box).appendChild(el("p", { class: "muted" }, "asking " + t.name + "…"));
      try {
        const r = await getJSON("/api/" + what + "?on=" + encodeURIComponent(t.name));
        clear(box);
        box.appendChild(el("p", {}, t.name + " (" + fmt(r.host) + ")"));
        box.appendChild(resourcesTable(r.resources));
        if (what === "queue") box.appendChild(listTable(QUEUE_HEADERS, queueRows(r)));
      } catch (err) { clear(box).appendChild(el("p", { class: "error" }, err.message)); }
    } } }, "refresh " + t.name);
    view.appendChild(el("div", {}, button, " ", fmt(t.runner), " on ", fmt(t.host), t.refusal ? el("span", { class: "error" }, " not contacted: " + t.refusal) : ""));
    view.appendChild(box);
  }
}

async function showQueue() {
  const view = clear($("view-queue"));
  view.appendChild(el("h2", {}, "queue here"));
  try {
    const data = await getJSON("/api/queue");
    const rows = queueRows(data);
    view.appendChild(rows.length ? listTable(QUEUE_HEADERS, rows) : el("p", { class: "muted" }, "the queue is empty"));
  } catch (err) { view.appendChild(el("p", { class: "error" }, err.message)); }
  await targetsList(view, "queue");
}

async function showHosts() {
  const view = clear($("view-hosts"));
  try {
    const data = await getJSON("/api/hosts");
    view.appendChild(el("h2", {}, "this machine (" + fmt(data.host) + ")"));
    view.appendChild(resourcesTable(data.resources));
  } catch (err) { view.appendChild(el("p", { class: "error" }, err.message)); }
  await targetsList(view, "hosts");
}

// -- routing ---------------------------------------------------------------------------------
function route() {
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  for (const v of ["table", "run", "queue", "hosts"]) $("view-" + v).hidden = true;
  clearTimeout(state.runTimer);
  if (path.startsWith("/run/")) {
    state.page = "run"; $("view-run").hidden = false;
    showRun(decodeURIComponent(path.slice(5)), params.get("vs"));
  } else if (path === "/queue") {
    state.page = "queue"; $("view-queue").hidden = false; showQueue();
  } else if (path === "/hosts") {
    state.page = "hosts"; $("view-hosts").hidden = false; showHosts();
  } else {
    state.page = "table"; $("view-table").hidden = false;
    if (params.get("sel")) {
      const wanted = params.get("sel").split(",").filter((id) => /^[0-9a-f]{40}$/.test(id));
      if (wanted.join(",") !== state.selected.join(",")) { state.selected = wanted; loadCurves(); }
    }
    renderRows();
  }
}

async function start() {
  const search = new URLSearchParams(location.search);
  state.token = search.get("token") || sessionStorage.getItem("gitexp-token");
  if (search.get("token")) {
    sessionStorage.setItem("gitexp-token", search.get("token"));
    history.replaceState(null, "", location.pathname + location.hash); // the token leaves the address bar
  }
  try {
    state.info = await getJSON("/api/info");
    $("repo").textContent = state.info.repo + " on " + state.info.host;
    $("mode").textContent = state.info.actions ? "actions allowed" : "read-only";
    document.title = "gitexp · " + state.info.repo;
  } catch (err) { $("error").textContent = err.message; }
  $("scroll").addEventListener("scroll", () => requestAnimationFrame(renderRows), { passive: true });
  window.addEventListener("resize", () => requestAnimationFrame(renderRows));
  $("apply").addEventListener("click", () => applyQuery());
  for (const id of ["filter", "sort"]) $(id).addEventListener("keydown", (ev) => { if (ev.key === "Enter") applyQuery(); });
  $("group-by").addEventListener("change", () => { buildItems(); renderRows(); });
  $("fold").addEventListener("change", async () => { await loadFolds(); if ($("fold").value) { $("band").value = $("fold").value; loadCurves(); } });
  $("select-none").addEventListener("click", () => { state.selected = []; selectionChanged(); renderRows(); });
  $("compare").addEventListener("click", () => { location.hash = "#/run/" + state.selected[0] + "?vs=" + state.selected[1]; });
  for (const id of ["metric", "xaxis", "logy", "band", "full"]) $(id).addEventListener("change", loadCurves);
  $("smooth").addEventListener("input", () => { $("smooth-value").textContent = $("smooth").value; });
  $("smooth").addEventListener("change", loadCurves);
  window.addEventListener("hashchange", route);
  await loadTable();
  route();
  performance.mark("gitexp-table-painted");
  document.body.dataset.ready = "1";
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", start);
