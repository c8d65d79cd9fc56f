// The outroute dashboard: the goal list, one goal's view, charts drawn as plain SVG.
// Everything comes from the JSON API of the server that serves this file; a server-sent
// event names a goal that changed, and only then is that goal read again.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#285e61", "#97266d", "#4a5568"];
const TOKEN_KEY = "outroute-dashboard-token";
const MIN_REFRESH_MS = 1000;

const state = {
  config: null,
  goal: null,
  window: "hour",
  view: null,
  colors: new Map(),
  lastFetch: 0,
  pending: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const pct = (v, digits = 1) => (v === null || v === undefined ? "-" : `${(100 * v).toFixed(digits)}%`);
const num = (v, digits = 0) => (v === null || v === undefined ? "-" : Number(v).toFixed(digits));

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 90) return `${seconds.toFixed(1)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(0)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function clock(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  if (state.window === "week") return `${d.getMonth() + 1}/${d.getDate()} ${pad(d.getHours())}h`;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function notice(message, kind = "error") {
  const box = $("notice");
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = !message;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// ---- the goal list ---------------------------------------------------------------------

async function loadGoals() {
  const goals = await api("/api/goals");
  const list = $("goal-list");
  list.replaceChildren();
  $("no-goals").hidden = goals.length > 0;
  for (const summary of goals) {
    const notes = summary.reasons.map((reason) => el("span", { class: "note" }, reason));
    const link = el("a", { href: `#goal=${encodeURIComponent(summary.goal)}` }, summary.goal);
    const item = el("li", { "data-goal": summary.goal, class: summary.attention > 0 ? "attention" : "" }, link, ...notes);
    if (summary.goal === state.goal) item.classList.add("current");
    list.append(item);
  }
  if (!state.goal && goals.length) selectGoal(goals[0].goal);
}

// ---- one goal --------------------------------------------------------------------------

function selectGoal(goal) {
  if (location.hash !== `#goal=${encodeURIComponent(goal)}`) {
    location.hash = `goal=${encodeURIComponent(goal)}`;
    return; // hashchange comes back here
  }
  state.goal = goal;
  state.view = null;
  for (const item of document.querySelectorAll("#goal-list li")) {
    item.classList.toggle("current", item.dataset.goal === goal);
  }
  refreshGoal(true);
}

function refreshGoal(now = false) {
  if (!state.goal) return;
  const wait = now ? 0 : Math.max(0, state.lastFetch + MIN_REFRESH_MS - Date.now());
  if (state.pending !== null) return;
  state.pending = setTimeout(async () => {
    state.lastFetch = Date.now();
    try {
      const goal = state.goal;
      const view = await api(`/api/goals/${encodeURIComponent(goal)}?window=${state.window}`);
      if (goal === state.goal) renderGoal(view);
    } catch (error) {
      notice(`could not read goal ${state.goal}: ${error.message}`);
    } finally {
      state.pending = null;
    }
  }, wait);
}

function colorOf(path) {
  if (!state.colors.has(path)) state.colors.set(path, COLORS[state.colors.size % COLORS.length]);
  return state.colors.get(path);
}

function renderGoal(view) {
  state.view = view;
  $("goal").hidden = false;
  $("goal-name").textContent = view.goal;
  $("snapshot").textContent = `policy version ${view.snapshot.version}, ${ago(view.snapshot.age_s)} old`;
  for (const button of document.querySelectorAll("[data-window]")) {
    button.classList.toggle("current", button.dataset.window === state.window);
  }
  renderPaths(view);
  renderCharts(view);
  renderHealth(view);
  renderTimeline(view);
}

function renderPaths(view) {
  const body = $("paths").querySelector("tbody");
  body.replaceChildren();
  for (const p of view.paths) {
    const [low, high] = p.interval_95;
    const recent = p.recent_rate === null ? "-" : `${pct(p.recent_rate)} (${p.recent_n}) vs ${pct(p.baseline_rate)}`;
    const status = el("span", { class: `status status-${p.status}` }, p.status);
    const flags = [];
    if (p.open_alert) flags.push(el("span", { class: "flag alert-flag", title: "open alert" }, "alert"));
    if (p.pinned) flags.push(el("span", { class: "flag pin-flag", title: "the goal is pinned to this path" }, "pinned"));
    const disabled = p.disabled !== null;
    const actions = el(
      "td",
      { class: "actions" },
      el("button", { type: "button", "data-action": disabled ? "enable" : "disable", "data-path": p.path }, disabled ? "Enable" : "Disable"),
      el("button", { type: "button", "data-action": p.pinned ? "unpin" : "pin", "data-path": p.path }, p.pinned ? "Unpin" : "Pin"),
    );
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colorOf(p.path);
    body.append(
      el(
        "tr",
        { "data-path": p.path, class: `row-${p.status}` },
        el("th", { scope: "row" }, swatch, p.path),
        el("td", {}, status, ...flags),
        el("td", { class: "num" }, `${pct(p.mean)} (${pct(low)}-${pct(high)})`),
        el("td", { class: "num" }, recent),
        el("td", { class: "num share-now" }, pct(p.share_now, 0)),
        el("td", { class: "num" }, String(p.n)),
        el("td", { class: "num" }, num(p.mean_cost_usd, 5)),
        el("td", { class: "num" }, num(p.mean_latency_ms)),
        actions,
      ),
    );
  }
}

// ---- charts ----------------------------------------------------------------------------

const CHART = { width: 640, height: 220, left: 44, right: 12, top: 10, bottom: 24 };

function drawChart(target, lines, markers, range, box = CHART) {
  target.replaceChildren();
  const [t0, t1] = range;
  const w = box.width - box.left - box.right;
  const h = box.height - box.top - box.bottom;
  const yMax = box.yMax ?? 1;
  const x = (t) => box.left + ((t - t0) / Math.max(1, t1 - t0)) * w;
  const y = (v) => box.top + h - (v / yMax) * h;
  const ticks = box.ticks ?? [0, 0.25, 0.5, 0.75, 1];
  for (const v of ticks) {
    target.append(svg("line", { x1: box.left, x2: box.left + w, y1: y(v), y2: y(v), class: "grid" }));
    target.append(svg("text", { x: box.left - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, box.format ? box.format(v) : pct(v, 0)));
  }
  for (const t of [t0, (t0 + t1) / 2, t1]) {
    target.append(svg("text", { x: x(t), y: box.height - 6, class: "axis", "text-anchor": "middle" }, clock(t)));
  }
  for (const marker of markers) {
    if (marker.t < t0 || marker.t > t1) continue;
    const group = svg("g", { class: `marker marker-${marker.kind}`, "data-kind": marker.kind });
    group.append(svg("line", { x1: x(marker.t), x2: x(marker.t), y1: box.top, y2: box.top + h }));
    group.append(svg("title", {}, marker.label));
    target.append(group);
  }
  for (const line of lines) {
    let d = "";
    let pen = false;
    for (const [t, v] of line.points) {
      if (v === null || v === undefined) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    const path = svg("path", { d, stroke: line.color, class: "series", "data-path": line.name });
    path.append(svg("title", {}, line.name));
    target.append(path);
    // a dot per value, so that a point with no neighbour (the first minute) shows too
    for (const [t, v] of line.points) {
      if (v === null || v === undefined) continue;
      const dot = svg("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2, fill: line.color, class: "dot" });
      dot.append(svg("title", {}, `${line.name} ${clock(t)}: ${box.format ? box.format(v) : pct(v)}`));
      target.append(dot);
    }
  }
}

function markersOf(view) {
  const markers = [];
  for (const alert of view.alerts) {
    const kind = alert.state === "open" ? "alert" : "resolved";
    markers.push({
      t: Date.parse(alert.detected_at),
      kind,
      label: `${alert.path}: alert ${alert.state}, recent ${pct(alert.recent_rate)} vs baseline ${pct(alert.baseline_rate)}`,
    });
  }
  for (const record of view.overrides.log) {
    markers.push({
      t: Date.parse(record.at),
      kind: "override",
      label: `${record.action} ${record.path ?? ""} by ${record.by}${record.reason ? `: ${record.reason}` : ""}`,
    });
  }
  return markers;
}

function rangeOf(series) {
  const times = series.times;
  return [times[0] * 1000, (times[times.length - 1] + series.step_s) * 1000];
}

function renderCharts(view) {
  const series = view.series;
  // a point's value is drawn at the middle of its interval
  const mid = (i) => (series.times[i] + series.step_s / 2) * 1000;
  const share = [];
  const success = [];
  for (const [path, values] of Object.entries(series.paths)) {
    const color = colorOf(path);
    share.push({ name: path, color, points: values.share.map((v, i) => [mid(i), v]) });
    success.push({ name: path, color, points: values.success_rate.map((v, i) => [mid(i), v]) });
  }
  const markers = markersOf(view);
  drawChart($("share-chart"), share, markers, rangeOf(series));
  drawChart($("success-chart"), success, markers, rangeOf(series));
  drawScaled($("latency-chart"), series, "mean_latency_ms", (v) => num(v), markers);
  drawScaled($("cost-chart"), series, "mean_cost_usd", (v) => num(v, 4), markers);
  const legend = $("legend");
  legend.replaceChildren();
  for (const path of Object.keys(series.paths)) {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colorOf(path);
    legend.append(el("span", { class: "legend-item" }, swatch, path));
  }
  legend.append(el("span", { class: "legend-item" }, el("span", { class: "swatch marker-alert-swatch" }), "alert"));
  legend.append(el("span", { class: "legend-item" }, el("span", { class: "swatch marker-override-swatch" }), "override"));
}

// A chart of one per-path value on its own scale (0 to the largest value in the window).
function drawScaled(target, series, field, format, markers) {
  const mid = (i) => (series.times[i] + series.step_s / 2) * 1000;
  const lines = Object.entries(series.paths).map(([path, values]) => ({
    name: path,
    color: colorOf(path),
    points: values[field].map((v, i) => [mid(i), v]),
  }));
  const values = lines.flatMap((line) => line.points.map((p) => p[1])).filter((v) => v !== null);
  const peak = values.length ? Math.max(...values) : 1;
  const top = peak > 0 ? peak * 1.1 : 1;
  drawChart(target, lines, markers, rangeOf(series), {
    width: 640, height: 120, left: 52, right: 12, top: 6, bottom: 20, yMax: top, ticks: [0, top / 2, top], format,
  });
}

const HEALTH_SHOWN = ["outcomes", "decisions", "joined", "unreported", "duplicates", "replays", "unmatched", "dead_lettered"];

function renderHealth(view) {
  const health = view.health;
  const list = $("health");
  list.replaceChildren();
  const perMin = health.outcomes_per_min;
  // the last point is still filling: the one before is the last whole one
  const lastWhole = perMin.length > 1 ? perMin[perMin.length - 2] : perMin[0];
  const rows = [
    ["snapshot age", ago(view.snapshot.age_s)],
    ["outcomes per minute", num(lastWhole, 1)],
  ];
  for (const name of HEALTH_SHOWN) {
    const counts = health.counts[name];
    if (counts) rows.push([`${name.replaceAll("_", " ")} (${state.window})`, String(counts.reduce((a, b) => a + b, 0))]);
  }
  for (const [name, value] of rows) {
    list.append(el("dt", {}, name), el("dd", { "data-health": name }, value));
  }
  const points = perMin.map((v, i) => [(health.times[i] + health.step_s / 2) * 1000, v]);
  const peak = Math.max(1, ...perMin);
  drawChart($("health-chart"), [{ name: "outcomes per minute", color: "#4a5568", points }], [], rangeOf(health), {
    width: 640, height: 90, left: 44, right: 12, top: 6, bottom: 20, yMax: peak, ticks: [0, peak], format: (v) => String(Math.round(v)),
  });
}

function renderTimeline(view) {
  const items = [];
  for (const alert of view.alerts) {
    items.push({
      at: alert.detected_at,
      kind: alert.state === "open" ? "alert" : "resolved",
      text: `${alert.path}: alert ${alert.state}: recent ${pct(alert.recent_rate)} (n=${alert.recent_n}) vs baseline ${pct(alert.baseline_rate)}`,
    });
  }
  for (const record of view.overrides.log) {
    const until = record.until ? ` until ${new Date(record.until).toLocaleString()}` : "";
    items.push({
      at: record.at,
      kind: "override",
      text: `${record.action} ${record.path ?? ""}${until} by ${record.by}${record.reason ? `: ${record.reason}` : ""}`,
    });
  }
  items.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
  const list = $("timeline");
  list.replaceChildren();
  for (const item of items.slice(0, 30)) {
    list.append(el("li", { class: `event-${item.kind}` }, el("time", {}, new Date(item.at).toLocaleString()), " ", item.text));
  }
  if (!items.length) list.append(el("li", { class: "hint" }, "no alerts or overrides yet"));
}

// ---- changes ---------------------------------------------------------------------------

async function act(action, path) {
  if (!state.config.writable) {
    notice("This dashboard is read-only: changes need a dashboard started with OUTROUTE_DASHBOARD_TOKEN set.");
    return;
  }
  if (!token()) {
    notice("Enter the dashboard's token first.");
    $("token").focus();
    return;
  }
  const body = {};
  if (action === "disable" || action === "pin") {
    const duration = $("change-for").value.trim();
    const reason = $("change-reason").value.trim();
    if (duration) body.for = duration;
    if (reason) body.reason = reason;
  }
  if (action === "pin") body.path = path;
  const goal = encodeURIComponent(state.goal);
  const url = action === "pin" || action === "unpin"
    ? `/api/goals/${goal}/${action}`
    : `/api/goals/${goal}/paths/${encodeURIComponent(path)}/${action}`;
  try {
    await api(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token()}` },
      body: JSON.stringify(body),
    });
    notice(`${action} ${action === "unpin" ? "" : path}: done`, "ok");
    refreshGoal(true);
  } catch (error) {
    notice(`${action} ${path}: ${error.message}`);
  }
}

// ---- wiring ----------------------------------------------------------------------------

function fromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const goal = params.get("goal");
  if (goal && goal !== state.goal) selectGoal(goal);
}

function connectFeed() {
  const feed = new EventSource("/api/events");
  feed.addEventListener("ready", () => {
    $("feed").textContent = "live";
    $("feed").className = "feed live";
  });
  feed.addEventListener("goal", (event) => {
    const goal = JSON.parse(event.data);
    if (goal === state.goal) refreshGoal();
    scheduleGoals();
  });
  feed.onerror = () => {
    $("feed").textContent = "reconnecting";
    $("feed").className = "feed down";
  };
}

let goalsTimer = null;
function scheduleGoals() {
  if (goalsTimer !== null) return;
  goalsTimer = setTimeout(async () => {
    goalsTimer = null;
    try {
      await loadGoals();
    } catch (error) {
      notice(`could not read the goals: ${error.message}`);
    }
  }, 2000);
}

function showMode() {
  const writable = state.config.writable;
  const form = $("token-form");
  form.hidden = !writable;
  $("forget-token").hidden = !token();
  $("mode").textContent = !writable ? "read-only" : token() ? "changes allowed" : "read-only until a token is entered";
  $("mode").className = `mode ${writable && token() ? "writable" : "readonly"}`;
}

async function start() {
  state.config = await api("/api/config");
  $("deployment").textContent = `Redis ${state.config.redis}, key prefix ${state.config.redis_key_prefix}, topic prefix ${state.config.topic_prefix}`;
  showMode();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    showMode();
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showMode();
  });
  $("change-form").addEventListener("submit", (event) => event.preventDefault());
  $("paths").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) act(button.dataset.action, button.dataset.path);
  });
  for (const button of document.querySelectorAll("[data-window]")) {
    button.addEventListener("click", () => {
      state.window = button.dataset.window;
      refreshGoal(true);
    });
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  await loadGoals();
  connectFeed();
}

start().catch((error) => notice(`the dashboard could not start: ${error.message}`));
