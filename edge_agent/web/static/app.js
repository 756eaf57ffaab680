// Status page: renders /api/state, keeps it live from /api/events (Server-Sent Events) and draws
// the last hour of every numeric tag as an inline SVG trend. Plain JavaScript, no framework and
// nothing fetched from anywhere but this agent: line PCs are often offline.
//
// Everything from the agent (tag names, alert texts) is put into the page with textContent,
// never as HTML, so an odd alert explanation cannot inject markup.
"use strict";

const WINDOW_MS = 3600 * 1000;
const STALE_MS = 5000;
const SVG_NS = "http://www.w3.org/2000/svg";
const TREND_W = 120;
const TREND_H = 32;

const view = {
  machines: new Map(), // id -> {card, parts..., rows: Map(tag -> row), series: Map(tag -> {t, v})}
  alertsKey: null,
  recentKey: null,
  injectKey: null,
  lastUpdate: 0,
  state: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// ---- formatting -------------------------------------------------------------------------------

function formatNumber(value) {
  const size = Math.abs(value);
  const digits = size >= 1000 ? 0 : size >= 100 ? 1 : size >= 1 ? 2 : 3;
  return value.toFixed(digits);
}

function formatValue(item) {
  if (item.value === null || item.value === undefined) return item.quality ? "BAD" : "–";
  if (typeof item.value === "number") return formatNumber(item.value);
  return String(item.value);
}

function clock(ms) {
  if (!ms) return "–";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function ago(ms, now) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
}

function sinceMs(value) {
  // Alert "since" is opaque: epoch seconds, milliseconds, nanoseconds or an ISO string.
  if (typeof value === "number") {
    if (value > 1e17) return value / 1e6;
    if (value > 1e11) return value;
    return value * 1000;
  }
  if (typeof value === "string") {
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed;
  }
  return null;
}

// ---- trends -----------------------------------------------------------------------------------

function trimSeries(series, now) {
  const cutoff = now - WINDOW_MS;
  let drop = 0;
  while (drop < series.t.length && series.t[drop] < cutoff) drop += 1;
  if (drop) {
    series.t.splice(0, drop);
    series.v.splice(0, drop);
  }
}

// The time span a card's trends show: the last hour, or less while the agent has not been
// running that long (at least a minute), so a fresh start draws a shape, not a sliver at the edge.
function trendSpan(entry, now) {
  let first = now;
  for (const series of entry.series.values()) {
    if (series.t.length) first = Math.min(first, series.t[0]);
  }
  return Math.min(WINDOW_MS, Math.max(60 * 1000, now - first));
}

function spanText(spanMs) {
  const minutes = Math.round(spanMs / 60000);
  return minutes >= 60 ? "last hour" : `last ${minutes} min`;
}

// One min-max pair per pixel column, so an hour of points costs at most 2 x TREND_W vertices and
// a short spike still shows.
function drawTrend(svg, series, now, spanMs) {
  const path = svg.querySelector("path");
  svg.dataset.points = series ? String(series.t.length) : "0";
  if (!series || series.t.length < 2) {
    path.setAttribute("d", "");
    return;
  }
  const start = now - spanMs;
  const columns = new Map();
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < series.t.length; i += 1) {
    if (series.t[i] < start) continue;
    const x = Math.min(TREND_W - 1, Math.max(0, Math.floor(((series.t[i] - start) / spanMs) * TREND_W)));
    const v = series.v[i];
    const column = columns.get(x);
    if (column) {
      column[0] = Math.min(column[0], v);
      column[1] = Math.max(column[1], v);
      column[2] = v;
    } else {
      columns.set(x, [v, v, v]);
    }
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  // A flat signal is drawn as a flat line in the middle, not pinned to an edge.
  const y = hi > lo ? (v) => (TREND_H - 2 - ((v - lo) / (hi - lo)) * (TREND_H - 4)).toFixed(1) : () => TREND_H / 2;
  const parts = [];
  const ordered = [...columns.entries()].sort((a, b) => a[0] - b[0]);
  for (const [x, [min, max, last]] of ordered) {
    parts.push(`${parts.length ? "L" : "M"}${x} ${y(min)}`);
    if (max !== min) parts.push(`L${x} ${y(max)}`);
    if (last !== max) parts.push(`L${x} ${y(last)}`);
  }
  if (ordered.length === 1) parts.push(`L${ordered[0][0] + 1} ${y(ordered[0][1][2])}`);
  path.setAttribute("d", parts.join(" "));
  const range = hi > lo ? `min ${formatNumber(lo)}, max ${formatNumber(hi)}` : `steady at ${formatNumber(hi)}`;
  svg.querySelector("title").textContent = `${spanText(spanMs)}: ${range}`;
}

function newTrend() {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${TREND_W} ${TREND_H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "trend");
  svg.setAttribute("role", "img");
  const title = document.createElementNS(SVG_NS, "title");
  title.textContent = "last hour";
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(title, path);
  return svg;
}

// ---- machines ---------------------------------------------------------------------------------

const PROTOCOLS = { opcua: "OPC UA", modbus: "Modbus TCP" };

function machineCard(machine) {
  const card = el("article", "machine");
  card.dataset.machine = machine.id;
  const head = el("header", "machine-head");
  const name = el("h2", "machine-name", machine.id);
  const badge = el("span", "state");
  head.append(name, badge);
  const meta = el("p", "meta");
  const reason = el("p", "reason");
  reason.hidden = true;
  const model = el("p", "model");
  model.hidden = true;
  const table = el("table", "tags");
  const body = el("tbody");
  table.append(body);
  card.append(head, meta, model, reason, table);
  if (machine.description) name.title = machine.description;
  return { card, badge, meta, model, reason, body, rows: new Map(), series: new Map() };
}

function trainedText(ms, now) {
  // Today: the time of day; earlier: the date too (a model may be weeks old).
  if (!ms) return "";
  const when = new Date(ms);
  if (new Date(now).toDateString() === when.toDateString()) return clock(ms);
  return when.toLocaleString([], { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

// One short line per card, so a 1024x600 panel and a phone keep room for the values.
function modelText(model, now) {
  if (model.state === "off") return "alerts off for this machine";
  if (model.state === "error") return `model error: ${model.error}`;
  if (model.state === "learning") {
    const share = model.needed ? Math.floor((100 * model.windows) / model.needed) : 0;
    return `learning ${model.windows}/${model.needed} windows (${share} %)`;
  }
  let text = `ready, model ${model.version}`;
  if (model.trained) text += `, trained ${trainedText(model.trained, now)}`;
  if (model.pinned) text += " · pinned";
  else if (model.retrains) text += ` · retrained ${model.retrains}×`;
  return text;
}

function updateModel(entry, model, now) {
  entry.model.hidden = !model;
  if (!model) return;
  entry.model.textContent = modelText(model, now);
  entry.model.className = `model ${model.state}`;
  const details = [`windows collected to learn: ${model.windows} of ${model.needed} needed`];
  if (model.version) details.push(`model version ${model.version}${model.pinned ? " (pinned in the config: never retrained)" : ""}`);
  if (model.trained) details.push(`trained ${new Date(model.trained).toLocaleString()}`);
  details.push(`scheduled retrains: ${model.retrains}`);
  entry.model.title = details.join("\n");
}

function tagRow(entry, tag) {
  const row = el("tr");
  row.dataset.tag = tag;
  const name = el("th");
  name.scope = "row";
  name.title = tag;
  // Long tag names may wrap after an underscore (narrow phones), never in the middle of a word.
  tag.split(/(?<=_)/).forEach((part, index) => {
    if (index) name.append(document.createElement("wbr"));
    name.append(part);
  });
  const value = el("td", "value");
  const number = el("span", "number");
  const unit = el("span", "unit");
  value.append(number, unit);
  const trendCell = el("td", "trend-cell");
  const svg = newTrend();
  trendCell.append(svg);
  row.append(name, value, trendCell);
  entry.body.append(row);
  const parts = { row, number, unit, svg };
  entry.rows.set(tag, parts);
  return parts;
}

function updateMachine(entry, machine, now) {
  const state = machine.state;
  entry.badge.textContent = state;
  entry.badge.className = `state ${state}`;
  entry.card.classList.toggle("is-down", state === "down");
  const protocol = PROTOCOLS[machine.protocol] || machine.protocol;
  const latency = machine.latency_ms === null ? "" : ` · ${machine.latency_ms} ms`;
  for (const series of entry.series.values()) trimSeries(series, now);
  const span = trendSpan(entry, now);
  entry.meta.textContent = `${protocol} · polled ${ago(machine.last_poll, now)}${latency} · trends: ${spanText(span)}`;
  entry.meta.title = `${machine.polls} polls, ${machine.failures} failures, every ${machine.interval_s} s`;
  if (state !== "up" && (machine.reason || machine.since)) {
    const since = machine.since ? `${state} since ${clock(machine.since)}` : state;
    entry.reason.textContent = machine.reason ? `${since}: ${machine.reason}` : since;
    entry.reason.hidden = false;
  } else {
    entry.reason.hidden = true;
  }
  updateModel(entry, machine.model, now);
  for (const item of machine.tags) {
    const parts = entry.rows.get(item.tag) || tagRow(entry, item.tag);
    parts.number.textContent = formatValue(item);
    parts.unit.textContent = item.unit && item.value !== null && item.value !== undefined ? ` ${item.unit}` : "";
    const bad = item.quality === "bad";
    parts.row.classList.toggle("bad", bad);
    parts.row.classList.toggle("uncertain", item.quality === "uncertain");
    parts.row.title = item.reason ? `${item.quality}: ${item.reason}` : item.t ? `read at ${clock(item.t)}` : "";
    let series = entry.series.get(item.tag);
    if (!series) {
      series = { t: [], v: [] };
      entry.series.set(item.tag, series);
    }
    const value = typeof item.value === "boolean" ? Number(item.value) : item.value;
    // Trends are on the agent's clock (when it read the value), as the history API's points are.
    const at = machine.last_poll;
    if (item.quality === "good" && typeof value === "number" && at > (series.t[series.t.length - 1] || 0)) {
      series.t.push(at);
      series.v.push(value);
    }
    drawTrend(parts.svg, series, now, span);
  }
}

async function loadHistory(id) {
  const entry = view.machines.get(id);
  try {
    const response = await fetch(`/api/history/${encodeURIComponent(id)}`, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    for (const tag of data.tags) {
      const live = entry.series.get(tag.tag) || { t: [], v: [] };
      const first = live.t.length ? live.t[0] : Infinity;
      const t = [];
      const v = [];
      for (let i = 0; i < tag.t.length && tag.t[i] < first; i += 1) {
        t.push(tag.t[i]);
        v.push(tag.v[i]);
      }
      entry.series.set(tag.tag, { t: t.concat(live.t), v: v.concat(live.v) });
    }
  } catch (error) {
    console.warn("history of", id, "unavailable:", error);
  }
}

function renderMachines(state) {
  const holder = $("machines");
  $("no-machines").hidden = state.machines.length > 0;
  const now = state.now;
  for (const machine of state.machines) {
    let entry = view.machines.get(machine.id);
    if (!entry) {
      entry = machineCard(machine);
      view.machines.set(machine.id, entry);
      holder.append(entry.card);
      loadHistory(machine.id).then(() => view.state && renderMachines(view.state));
    }
    updateMachine(entry, machine, now);
  }
}

// ---- delivery (broker / database / outbox) ----------------------------------------------------

const SINK_NAMES = { mqtt: "MQTT", influxdb: "InfluxDB" };

function renderDelivery(delivery) {
  const holder = $("delivery");
  holder.hidden = !delivery.length;
  holder.replaceChildren(
    ...delivery.map((sink) => {
      const stats = sink.stats || {};
      const outbox = sink.outbox;
      const pill = el("span", `pill ${sink.connected === false ? "bad" : "ok"}`);
      pill.dataset.sink = sink.name;
      const where = sink.target ? ` ${sink.target}` : "";
      const link = sink.connected === null ? "" : sink.connected ? " connected" : " unreachable";
      let text = `${SINK_NAMES[sink.name] || sink.name}${where}${link}`;
      const waiting = outbox && outbox.stats ? outbox.stats.entries || 0 : 0;
      const replay = sink.replay;
      if (replay && replay.active) {
        // The backlog of an outage draining: how far, how fast (the log has the same figures).
        const share = replay.total ? Math.floor((100 * replay.done) / replay.total) : 0;
        text += ` · replaying backlog ${replay.done.toLocaleString()}/${replay.total.toLocaleString()} (${share} %)`;
      } else if (waiting) {
        text += ` · ${waiting} waiting`;
      }
      const dropped = stats.dropped || (outbox && outbox.stats ? outbox.stats.dropped_batches || 0 : 0);
      if (dropped) {
        text += ` · ${dropped} dropped`;
        pill.className = "pill bad";
      } else if (waiting && sink.connected === false) {
        pill.className = "pill wait";
      }
      pill.textContent = text;
      const details = Object.entries(stats).map(([key, value]) => `${key}: ${value}`);
      if (outbox) {
        details.push(`outbox ${outbox.path || ""}`);
        details.push(...Object.entries(outbox.stats).map(([key, value]) => `  ${key}: ${value}`));
        if (outbox.oldest_age_s !== null) details.push(`  oldest waiting: ${outbox.oldest_age_s} s`);
      }
      if (replay) {
        const rate = replay.rate === null ? "" : ` at ${Math.round(replay.rate)}/s`;
        const what = replay.active ? "backlog replay under way" : "last backlog replay";
        details.push(`${what}: ${replay.done} of ${replay.total} entries in ${replay.elapsed_s} s${rate}`);
      }
      pill.title = details.join("\n");
      return pill;
    }),
  );
}

// ---- alerts -----------------------------------------------------------------------------------

function severityClass(severity) {
  const s = String(severity || "").toLowerCase();
  if (["critical", "high", "alarm", "error", "fault"].includes(s)) return "sev-high";
  if (["warning", "warn", "medium"].includes(s)) return "sev-medium";
  return "sev-low";
}

function explanationNode(explanation) {
  if (explanation === null || explanation === undefined || explanation === "") return null;
  if (typeof explanation === "string") return el("p", "explanation", explanation);
  if (Array.isArray(explanation)) {
    const list = el("ul", "explanation");
    for (const item of explanation) {
      list.append(el("li", null, typeof item === "string" ? item : describe(item)));
    }
    return list;
  }
  if (typeof explanation === "object") {
    const list = el("dl", "explanation");
    for (const [key, value] of Object.entries(explanation)) {
      list.append(el("dt", null, key), el("dd", null, typeof value === "string" ? value : describe(value)));
    }
    return list;
  }
  return el("p", "explanation", String(explanation));
}

// The alert engine's ranked signals: [{signal, percent, sigmas, pattern}], strongest first.
function signalsNode(signals) {
  if (!Array.isArray(signals) || !signals.length) return null;
  const changed = signals.filter((s) => !s || typeof s !== "object" || s.pattern !== "normal");
  const shown = (changed.length ? changed : signals).slice(0, 3);
  const list = el("ul", "explanation signals");
  for (const s of shown) {
    if (s && typeof s === "object" && s.signal !== undefined) {
      const parts = [];
      if (typeof s.percent === "number") parts.push(`${Math.round(s.percent)} % of the score`);
      if (typeof s.sigmas === "number") parts.push(`${s.sigmas.toFixed(1)} sigma from normal`);
      const pattern = s.pattern && s.pattern !== "normal" ? ` ${s.pattern}` : "";
      list.append(el("li", null, `${s.signal}${pattern}${parts.length ? `: ${parts.join(", ")}` : ""}`));
    } else {
      list.append(el("li", null, typeof s === "string" ? s : describe(s)));
    }
  }
  return list;
}

const HINT_LABELS = { cause: "Likely cause", action: "What to do", confidence: "How sure" };

function hintNode(hint) {
  if (!hint) return null;
  if (typeof hint === "string") return el("p", "explanation hint", hint);
  if (typeof hint !== "object") return null;
  const list = el("dl", "explanation hint");
  for (const [key, value] of Object.entries(hint)) {
    if (value === null || value === undefined || value === "" || key === "rule") continue; // rule: an internal id
    list.append(el("dt", null, HINT_LABELS[key] || key), el("dd", null, typeof value === "string" ? value : describe(value)));
  }
  return list;
}

function describe(value) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value)
      .map(([k, v]) => `${k}: ${typeof v === "number" ? formatNumber(v) : typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(", ");
  }
  return JSON.stringify(value);
}

function alertId(alert) {
  const id = alert.id ?? alert.alert_id;
  return id === undefined || id === null ? null : String(id);
}

function alertItem(alert, withButton) {
  const item = el("li", `alert ${severityClass(alert.severity)}`);
  const id = alertId(alert);
  if (id) item.dataset.alertId = id;
  if (alert.machine) item.dataset.machine = alert.machine;
  const head = el("div", "alert-head");
  head.append(el("span", "severity", alert.severity || "alert"));
  if (alert.machine) head.append(el("span", "alert-machine", alert.machine));
  head.append(el("strong", "alert-title", alert.title || alert.summary || alert.kind || "Alert"));
  const since = sinceMs(alert.since);
  if (since) head.append(el("span", "alert-since", `since ${clock(since)}`));
  item.append(head);
  if (alert.title && alert.summary) item.append(el("p", "summary", alert.summary));
  for (const node of [explanationNode(alert.explanation), signalsNode(alert.signals), hintNode(alert.hint)]) {
    if (node) item.append(node);
  }
  const acked = alert.acknowledged || alert.acknowledged_by;
  if (acked) {
    const by = alert.acknowledged_by ? ` by ${alert.acknowledged_by}` : "";
    item.append(el("p", "acked", `Acknowledged${by}`));
  } else if (withButton && id && alert.machine) {
    const button = el("button", "ack", "Acknowledge");
    button.type = "button";
    button.addEventListener("click", () => acknowledge(alert.machine, id, button));
    item.append(button);
  }
  return item;
}

async function acknowledge(machine, id, button) {
  button.disabled = true;
  button.textContent = "Acknowledging…";
  const by = $("ack-by").value.trim();
  if (by) remember("edge-agent-ack-by", by);
  try {
    const response = await fetch(`/api/alerts/${encodeURIComponent(machine)}/${encodeURIComponent(id)}/ack`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(by ? { by } : {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    button.textContent = "Acknowledged";
  } catch (error) {
    button.disabled = false;
    button.textContent = "Acknowledge";
    showError(`Could not acknowledge: ${error.message}`);
  }
}

function renderAlerts(alerts) {
  const panel = $("alerts");
  if (!alerts) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const error = $("alerts-error");
  error.hidden = !alerts.error;
  error.textContent = alerts.error || "";
  const activeKey = JSON.stringify(alerts.active);
  if (activeKey !== view.alertsKey) {
    view.alertsKey = activeKey;
    const list = $("active-alerts");
    list.replaceChildren(...alerts.active.map((alert) => alertItem(alert, true)));
    $("alert-count").textContent = String(alerts.active.length);
    $("alert-count").classList.toggle("hot", alerts.active.length > 0);
    $("no-alerts").hidden = alerts.active.length > 0;
  }
  const recentKey = JSON.stringify(alerts.recent);
  if (recentKey !== view.recentKey) {
    view.recentKey = recentKey;
    $("recent-alerts").replaceChildren(...alerts.recent.map((alert) => alertItem(alert, false)));
    $("recent-count").textContent = String(alerts.recent.length);
    $("recent").hidden = alerts.recent.length === 0;
  }
}

// ---- demo: inject a fault ---------------------------------------------------------------------

function renderInject(choices) {
  const panel = $("inject");
  if (!choices || !Object.keys(choices).length) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const key = JSON.stringify(choices);
  if (key === view.injectKey) return;
  view.injectKey = key;
  const machines = $("inject-machine");
  machines.replaceChildren(...Object.keys(choices).map((m) => new Option(m, m)));
  fillFaults(choices);
  machines.onchange = () => fillFaults(choices);
}

function fillFaults(choices) {
  const faults = choices[$("inject-machine").value] || [];
  $("inject-fault").replaceChildren(...faults.map((f) => new Option(f.replaceAll("_", " "), f)));
}

async function injectFault(event) {
  event.preventDefault();
  const machine = $("inject-machine").value;
  const fault = $("inject-fault").value;
  const result = $("inject-result");
  const button = $("inject-button");
  button.disabled = true;
  result.className = "";
  result.textContent = `Injecting ${fault} on ${machine}…`;
  try {
    const response = await fetch("/api/inject", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ machine, fault }),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    result.className = "ok";
    result.textContent = `Injected ${fault.replaceAll("_", " ")} on ${machine} at ${clock(Date.now())}: watch its values and the alerts.`;
  } catch (error) {
    result.className = "error";
    result.textContent = `Could not inject: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

// Local storage can be off (private windows, locked-down kiosks): the name is then not remembered.
function remember(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* not remembered */
  }
}

function recall(key) {
  try {
    return localStorage.getItem(key) || "";
  } catch {
    return "";
  }
}

// ---- page -------------------------------------------------------------------------------------

function showError(message) {
  const node = $("page-error");
  node.textContent = message;
  node.hidden = !message;
}

function render(state) {
  view.state = state;
  view.lastUpdate = Date.now();
  const agent = state.agent;
  $("site").textContent = `· ${agent.site} / ${agent.area} / ${agent.line}`;
  document.title = `Edge agent · ${agent.site}`;
  $("footer").textContent = `edge-agent ${agent.version} · updated ${clock(state.now)}`;
  renderDelivery(state.delivery || []);
  renderAlerts(state.alerts);
  renderInject(state.inject);
  renderMachines(state);
}

function setLink(text, kind) {
  const pill = $("link");
  pill.textContent = text;
  pill.className = `pill ${kind}`;
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => setLink("live", "ok"));
  source.addEventListener("state", (event) => {
    setLink("live", "ok");
    showError("");
    render(JSON.parse(event.data));
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      setLink("disconnected", "bad");
      showError("Lost the connection to the agent. Reload the page to try again.");
    } else {
      setLink("reconnecting…", "wait");
    }
  });
}

setInterval(() => {
  if (view.lastUpdate && Date.now() - view.lastUpdate > STALE_MS && $("link").textContent === "live") {
    setLink("no updates", "wait");
  }
}, 1000);

document.addEventListener("DOMContentLoaded", () => {
  $("ack-by").value = recall("edge-agent-ack-by");
  $("inject-form").addEventListener("submit", injectFault);
  connect();
});
