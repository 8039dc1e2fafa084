// The live study page (templates/studies/detail.html, studies.views.study_detail).
//
// The server renders the true current state; this module keeps it current from the study
// websocket (live.js: the snapshot first, then events, docs/events.md) and the REST API
// (api.js, docs/api.md). Nothing here is needed to read the page with JavaScript off.
//
// Element ids and data attributes (stable: the browser tests rely on them):
//   #study-data             JSON: study_id, status, n_trials, mode, progress, best_trial
//                           {number, id}, trial_ids {number: id}, last_log_id
//   #study-status           status badge (class = the status); #study-status-reason
//   #live-status            connection state, announced politely
//   #start-form, #cancel-form  POST forms (hidden when the action does not apply; absent
//                           for viewers); #start-button, #cancel-button
//   #tile-trials, #tile-best-accuracy, #tile-best-score, #tile-average, #tile-eta
//                           tiles; the value is in their .value child
//   #overall-progress       <progress> max = n_trials, value = finished
//   #running-trials         <ul>, one <li data-trial=N> per running trial: [data-field=epoch]
//                           "epoch i of n", a <progress max=1> share of the epoch,
//                           [data-field=fraction]; #no-running when empty
//   #best-trial-number, #no-best, #best-details
//   #best-architecture      .viewer div for arch3d.js, data-architecture-url = the best
//                           trial's API address; #best-architecture-summary (a <dl>),
//                           #best-architecture-note
//   #best-health            table of the best trial's health components and measurements
//   #best-model-link        download of the best model (hidden when there is none)
//   tabs #tab-main, #tab-more (role=tab) with panels #panel-main, #panel-more;
//   plots #plot-<kind> with #plot-<kind>-message (history, importance, parallel on the
//   first tab; contour, slice, intermediate, timeline on the second)
//   #gallery                one article.trial-card[data-trial=N][data-trial-id=ID] per trial,
//                           fields in [data-field=status|epoch|accuracy|health|total|
//                           duration|architecture|link]; #no-trials; #trial-card-template
//   #study-log              the log (role=log); data-last-id = the newest entry shown
//
// The formatting below mirrors studies/views.py: keep them in step.

import { ApiError, fetchAllPages, getJSON } from "./api.js";
import { connectStudy } from "./live.js";

const NO_VALUE = "—";
const ACTIVE = new Set(["queued", "running", "cancelling"]);
const STATUS_LABELS = {
  draft: "Draft", queued: "Queued", running: "Running", cancelling: "Cancelling",
  cancelled: "Cancelled", completed: "Completed", failed: "Failed",
};
const MODE_SCORE_LABELS = { simple: "accuracy", health: "0.7·accuracy + 0.3·health" };
const RECURRENT_TYPES = new Set(["LSTM", "GRU", "SimpleRNN", "Bidirectional"]);
const HEALTH_COMPONENTS = [
  ["gradients", "Gradient norms"], ["dead_units", "Dead filters and units"],
  ["saturation", "Saturated units"], ["loss_stability", "Loss stability"],
  ["overfitting", "Overfitting"], ["finite", "Finite weights and losses"],
];
const HEALTH_METRICS = [
  ["grad_norm_mean", "Mean gradient norm", "number"],
  ["dead_fraction", "Dead share of ReLU units", "percent"],
  ["saturated_fraction", "Saturated share of bounded units", "percent"],
  ["loss_upward_share", "Share of loss movement upwards", "percent"],
  ["overfitting_gap", "Train − validation accuracy", "percent"],
];
const RECENT_TRIALS = 100; // trials refreshed from the API after a change (newest first)

const $ = (id) => document.getElementById(id);
const isNumber = (value) => typeof value === "number" && Number.isFinite(value);

// --- formatting (as studies/views.py) ------------------------------------------------------

export function durationText(seconds) {
  if (!isNumber(seconds)) return NO_VALUE;
  const s = Math.floor(Math.max(0, seconds) + 0.5);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
export const percentText = (value) => (isNumber(value) ? `${(value * 100).toFixed(1)}%` : NO_VALUE);
export const scoreText = (value) => (isNumber(value) ? value.toFixed(4) : NO_VALUE);

export function architectureSummary(architecture, paramCount) {
  const layers = (architecture && architecture.layers) || [];
  if (!layers.length) return [];
  const conv = layers.filter((layer) => String(layer.type || "").startsWith("Conv"));
  const recurrent = layers.filter((layer) => RECURRENT_TYPES.has(layer.type));
  const dense = layers.filter((layer) => layer.type === "Dense");
  const activations = [];
  for (const layer of layers) {
    if (layer.activation != null && layer.activation !== "linear" && !activations.includes(layer.activation)) {
      activations.push(layer.activation);
    }
  }
  const rows = [];
  if (conv.length || !recurrent.length) {
    rows.push(["Conv layers", String(conv.length)]);
    if (conv.length) {
      rows.push(["Filters", conv.map((layer) => String(layer.filters)).join(", ")]);
      rows.push(["Kernel sizes", conv.map((layer) => (layer.kernel_size || []).join("×") || "?").join(", ")]);
    }
  }
  if (recurrent.length) {
    rows.push(["Recurrent layers", String(recurrent.length)]);
    rows.push(["Recurrent units", recurrent.map((layer) => String(layer.units)).join(", ")]);
  }
  rows.push(["Dense layers", String(dense.length)]);
  if (dense.length) rows.push(["Dense units", dense.map((layer) => String(layer.units)).join(", ")]);
  rows.push(["Activations", activations.join(", ") || NO_VALUE]);
  const total = architecture.total_params ?? paramCount;
  rows.push(["Parameters", Number.isInteger(total) ? total.toLocaleString("en-US") : NO_VALUE]);
  return rows;
}

function healthRows(health) {
  const components = (health && health.components) || {};
  const metrics = (health && health.metrics) || {};
  const rows = HEALTH_COMPONENTS.filter(([key]) => key in components)
    .map(([key, label]) => [label, scoreText(components[key])]);
  for (const [key, label, kind] of HEALTH_METRICS) {
    if (metrics[key] != null) rows.push([label, kind === "percent" ? percentText(metrics[key]) : Number(metrics[key]).toPrecision(3).replace(/\.?0+$/, "")]);
  }
  return rows;
}

function fillDefinitionList(list, rows, emptyText) {
  const items = rows.length ? rows : emptyText ? [["Architecture", emptyText]] : [];
  list.replaceChildren(...items.map(([label, text]) => {
    const row = document.createElement("div");
    const term = document.createElement("dt");
    const value = document.createElement("dd");
    term.textContent = label;
    value.textContent = text;
    row.append(term, value);
    return row;
  }));
}

// --- small scheduling helpers ---------------------------------------------------------------

/** fn, run at most once per `ms`, trailing: calls during a run or a wait coalesce. */
function coalesce(fn, ms) {
  let timer = null;
  let running = false;
  let again = false;
  async function run() {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch (error) { console.warn(error); }
    running = false;
    if (again) { again = false; schedule(); }
  }
  function schedule() { if (timer === null) timer = window.setTimeout(run, ms); }
  return schedule;
}

// --- the page --------------------------------------------------------------------------------

const page = JSON.parse($("study-data").textContent);
const studyId = page.study_id;
const api = `/api/v1/studies/${studyId}`;
const state = {
  status: page.status,
  progress: page.progress || {},
  best: page.best_trial, // {number, id} or null
  trialIds: new Map(Object.entries(page.trial_ids || {}).map(([number, id]) => [Number(number), id])),
  lastLogId: page.last_log_id || 0,
  architectureAsked: new Set(),
  connectedBefore: false,
  viewer: null,
};

function setTile(id, text) {
  const value = $(id)?.querySelector(".value");
  if (value && value.textContent !== text) value.textContent = text;
}

function setStatus(status, reason) {
  if (!status) return;
  state.status = status;
  const badge = $("study-status");
  badge.className = `status ${status}`;
  badge.textContent = STATUS_LABELS[status] || status;
  if (reason !== undefined) $("study-status-reason").textContent = reason || "";
  if ($("start-form")) $("start-form").hidden = status !== "draft";
  if ($("cancel-form")) $("cancel-form").hidden = !(status === "queued" || status === "running");
  if (!ACTIVE.has(status)) setTile("tile-eta", NO_VALUE);
}

function applySnapshot(progress, { initial = false } = {}) {
  if (!progress || progress.version === undefined) return; // none stored yet (a draft)
  const before = state.progress;
  state.progress = progress;
  setStatus(progress.status);
  const bestScore = progress.best_total_score ?? progress.best_value;
  setTile("tile-trials", `${progress.finished ?? 0} / ${progress.n_trials ?? page.n_trials}`);
  setTile("tile-best-accuracy", percentText(progress.best_accuracy));
  setTile("tile-best-score", scoreText(bestScore));
  const mode = $("tile-best-score")?.querySelector(".score-mode");
  if (mode && progress.mode) mode.textContent = `(${MODE_SCORE_LABELS[progress.mode] || progress.mode})`;
  setTile("tile-average", durationText(progress.average_trial_s));
  setTile("tile-eta", ACTIVE.has(progress.status) ? durationText(progress.eta_s) : NO_VALUE);
  const overall = $("overall-progress");
  overall.max = Math.max(1, progress.n_trials ?? page.n_trials);
  overall.value = progress.finished ?? 0;
  overall.textContent = `${progress.finished ?? 0} of ${progress.n_trials ?? page.n_trials}`;
  renderRunning(progress.running_trials || []);
  if (progress.best_trial != null && progress.best_trial !== state.best?.number) loadBest(progress.best_trial);

  const moved = ["finished", "running", "waiting", "complete", "pruned", "failed"]
    .some((key) => before[key] !== progress[key]);
  // Back after a lost connection, events may have been missed: catch up on the trials and
  // the log (cheap). Plots are costly to compute: only when the finished trials changed.
  if (moved || (initial && state.connectedBefore)) { refreshTrialsSoon(); pollLogSoon(); }
  if (before.finished !== progress.finished || before.best_trial !== progress.best_trial) refreshPlotsSoon();
}

// --- running trials ---------------------------------------------------------------------------

function runningItem(number) {
  const list = $("running-trials");
  let item = list.querySelector(`li[data-trial="${number}"]`);
  if (item) return item;
  item = document.createElement("li");
  item.dataset.trial = String(number);
  const label = document.createElement("span");
  label.className = "running-label";
  label.id = `running-${number}-label`;
  const epoch = document.createElement("span");
  epoch.dataset.field = "epoch";
  label.append(`Trial ${number}: `, epoch);
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.setAttribute("aria-labelledby", label.id);
  const fraction = document.createElement("span");
  fraction.dataset.field = "fraction";
  const note = document.createElement("span");
  note.className = "muted";
  note.textContent = "of the epoch";
  item.append(label, " ", bar, " ", fraction, " ", note);
  const after = [...list.children].find((other) => Number(other.dataset.trial) > number);
  list.insertBefore(item, after || null);
  $("no-running").hidden = true;
  return item;
}

function updateRunning(number, { epoch, epochs, fraction }) {
  const item = runningItem(number);
  const share = isNumber(fraction) ? fraction : 0;
  item.querySelector('[data-field="epoch"]').textContent = epochs ? `epoch ${epoch} of ${epochs}` : "starting";
  item.querySelector("progress").value = share;
  item.querySelector("progress").textContent = `${(share * 100).toFixed(0)}%`;
  item.querySelector('[data-field="fraction"]').textContent = `${(share * 100).toFixed(0)}%`;
}

function removeRunning(number) {
  $("running-trials").querySelector(`li[data-trial="${number}"]`)?.remove();
  $("no-running").hidden = $("running-trials").children.length > 0;
}

function renderRunning(running) {
  const numbers = new Set(running.map((trial) => trial.number));
  for (const item of [...$("running-trials").children]) {
    if (!numbers.has(Number(item.dataset.trial))) item.remove();
  }
  for (const trial of running) updateRunning(trial.number, trial);
  $("no-running").hidden = running.length > 0;
}

// --- the gallery --------------------------------------------------------------------------------

function card(number) {
  const gallery = $("gallery");
  let article = gallery.querySelector(`article[data-trial="${number}"]`);
  if (article) return article;
  article = $("trial-card-template").content.firstElementChild.cloneNode(true);
  article.dataset.trial = String(number);
  article.setAttribute("aria-labelledby", `trial-${number}-title`);
  article.querySelector("h3").id = `trial-${number}-title`;
  article.querySelector('[data-field="number"]').textContent = String(number);
  article.querySelector('[data-field="link"]').href = `/studies/${studyId}/trials/${number}/`;
  setCard(article, { status: "queued" });
  const after = [...gallery.children].find((other) => Number(other.dataset.trial) > number);
  gallery.insertBefore(article, after || null);
  $("no-trials").hidden = true;
  return article;
}

function setField(article, field, text) {
  const element = article.querySelector(`[data-field="${field}"]`);
  if (element && element.textContent !== text) element.textContent = text;
}

function setCard(article, values) {
  if (values.id != null) {
    article.dataset.trialId = String(values.id);
    state.trialIds.set(Number(article.dataset.trial), values.id);
  }
  if (values.status) {
    const badge = article.querySelector('[data-field="status"]');
    badge.className = `status ${values.status}`;
    badge.textContent = values.status;
  }
  if ("epoch" in values) setField(article, "epoch", values.epoch);
  if ("accuracy" in values) setField(article, "accuracy", percentText(values.accuracy));
  if ("health" in values) setField(article, "health", scoreText(values.health));
  if ("total" in values) setField(article, "total", scoreText(values.total));
  if ("seconds" in values) setField(article, "duration", durationText(values.seconds));
  if (values.architecture && values.architecture.layers) {
    fillDefinitionList(article.querySelector('[data-field="architecture"]'),
      architectureSummary(values.architecture, values.paramCount), "not built yet");
    article.dataset.hasArchitecture = "true";
  }
}

function cardHasArchitecture(article) {
  return article.dataset.hasArchitecture === "true" || !article.querySelector('[data-field="architecture"]').textContent.includes("not built yet");
}

async function refreshTrials() {
  const answer = await getJSON(`${api}/trials/?ordering=-number&page_size=${RECENT_TRIALS}`);
  const missing = [];
  for (const trial of answer.results || []) {
    const article = card(trial.number);
    const running = trial.state === "RUNNING";
    setCard(article, {
      id: trial.id,
      status: trial.outcome || trial.state.toLowerCase(),
      accuracy: trial.accuracy,
      health: trial.health_score,
      total: trial.total_score,
      seconds: trial.duration_s,
      ...(running ? {} : { epoch: "" }),
    });
    if (!running) removeRunning(trial.number);
    // The list has no architecture: fetch it once for a trial that should have one.
    if (trial.state !== "WAITING" && !cardHasArchitecture(article) && !state.architectureAsked.has(trial.id)) {
      if (!running) state.architectureAsked.add(trial.id);
      missing.push(trial.id);
    }
  }
  for (const id of missing.slice(0, 10)) {
    const detail = await getJSON(`/api/v1/trials/${id}/`);
    if (detail.architecture && detail.architecture.layers) {
      state.architectureAsked.add(id);
      setCard(card(detail.number), { architecture: detail.architecture, paramCount: detail.param_count });
    }
  }
}
const refreshTrialsSoon = coalesce(refreshTrials, 1500);

function handleEvent(event) {
  switch (event.type) {
    case "study.status":
      setStatus(event.status, event.reason);
      pollLogSoon();
      break;
    case "study.finished":
      setStatus(event.status, event.reason);
      pollLogSoon(); refreshTrialsSoon(); refreshPlotsSoon();
      break;
    case "trial.queued":
      card(event.trial);
      break;
    case "trial.started":
      setCard(card(event.trial), { status: "running", architecture: event.architecture, paramCount: event.param_count });
      updateRunning(event.trial, {});
      break;
    case "trial.progress":
    case "trial.epoch": {
      const fraction = event.type === "trial.epoch" ? 1 : event.fraction;
      setCard(card(event.trial), { status: "running", epoch: `epoch ${event.epoch} of ${event.epochs}` });
      updateRunning(event.trial, { epoch: event.epoch, epochs: event.epochs, fraction });
      break;
    }
    case "trial.finished":
      setCard(card(event.trial), {
        status: event.status || String(event.state || "").toLowerCase(),
        epoch: "",
        accuracy: event.accuracy,
        health: event.health_score,
        total: event.total_score,
        seconds: event.seconds,
      });
      removeRunning(event.trial);
      pollLogSoon(); refreshPlotsSoon(); refreshTrialsSoon();
      break;
    default:
      break; // a type this page does not know (a newer server): the snapshot covers it
  }
}

// --- the best trial --------------------------------------------------------------------------

let arch3d = null;
function loadArch3d() {
  // arch3d.js is another part of the portal; the page works (with the text summary) when it
  // is missing or fails.
  if (!arch3d) arch3d = import("./arch3d.js").catch((error) => { console.warn("arch3d.js:", error); return null; });
  return arch3d;
}

async function drawArchitecture(architecture, number, healthMetrics) {
  const element = $("best-architecture");
  const note = $("best-architecture-note");
  const module = await loadArch3d();
  if (!module || typeof module.renderArchitecture !== "function") {
    note.textContent = "The 3D view is not available; the layers are listed below.";
    return;
  }
  try {
    if (state.viewer && typeof state.viewer.dispose === "function") state.viewer.dispose();
    element.replaceChildren();
    state.viewer = await module.renderArchitecture(element, architecture, {
      title: `Best trial ${number}`,
      healthMetrics: healthMetrics || undefined,
    });
    note.textContent = "";
  } catch (error) {
    console.warn(error);
    note.textContent = "The 3D view could not be drawn; the layers are listed below.";
  }
}

async function trialId(number) {
  if (!state.trialIds.has(number)) await refreshTrials();
  if (!state.trialIds.has(number)) {
    const all = await fetchAllPages(`${api}/trials/?page_size=500`);
    for (const trial of all) state.trialIds.set(trial.number, trial.id);
  }
  return state.trialIds.get(number);
}

async function loadBest(number) {
  state.best = { number, id: state.best?.number === number ? state.best.id : undefined };
  const id = state.best.id ?? (await trialId(number));
  if (id == null || state.best.number !== number) return;
  state.best.id = id;
  const trial = await getJSON(`/api/v1/trials/${id}/`);
  if (state.best.number !== number) return; // a newer best arrived meanwhile
  const link = document.createElement("a");
  link.href = `/studies/${studyId}/trials/${number}/`;
  link.textContent = `#${number}`;
  $("best-trial-number").replaceChildren(link);
  $("no-best").hidden = true;
  $("best-details").hidden = false;
  $("best-architecture").dataset.architectureUrl = `/api/v1/trials/${id}/`;
  fillDefinitionList($("best-architecture-summary"), architectureSummary(trial.architecture, trial.param_count));
  const rows = healthRows(trial.health_metrics);
  const body = $("best-health").tBodies[0];
  body.replaceChildren(...(rows.length ? rows : [[null, "No health analysis for this trial."]]).map(([label, text]) => {
    const row = body.insertRow();
    if (label === null) {
      const cell = row.insertCell();
      cell.colSpan = 2; cell.className = "muted"; cell.textContent = text;
    } else {
      const head = document.createElement("th");
      head.scope = "row"; head.textContent = label;
      row.append(head);
      row.insertCell().textContent = text;
    }
    return row;
  }));
  $("best-model-link").hidden = !trial.model_url;
  if (trial.architecture && trial.architecture.layers) await drawArchitecture(trial.architecture, number, trial.health_metrics);
}

// --- plots -------------------------------------------------------------------------------------

const stalePanels = new Set(document.querySelectorAll('[role="tabpanel"]'));

async function loadPlot(figure) {
  const kind = figure.dataset.plot;
  const area = $(`plot-${kind}`);
  const message = $(`plot-${kind}-message`);
  if (!window.Plotly) {
    message.textContent = "The plotting library did not load.";
    message.hidden = false;
    return;
  }
  let answer;
  try {
    answer = await getJSON(`${api}/plots/${kind}/`);
  } catch (error) {
    message.textContent = error instanceof ApiError ? error.message : "The plot could not be loaded.";
    message.hidden = false;
    return;
  }
  if (answer.message) {
    window.Plotly.purge(area);
    area.hidden = true;
    message.textContent = answer.message;
    message.hidden = false;
    return;
  }
  message.hidden = true;
  area.hidden = false;
  const layout = { ...(answer.layout || {}), autosize: true };
  delete layout.width;
  await window.Plotly.react(area, answer.data || [], layout, { responsive: true, displaylogo: false });
}

async function loadPanel(panel) {
  stalePanels.delete(panel);
  // One at a time: each figure is computed on the server (importance fits a model), and
  // several at once would only compete with the study's own work.
  for (const figure of panel.querySelectorAll("[data-plot]")) await loadPlot(figure);
}

function refreshPlots() {
  document.querySelectorAll('[role="tabpanel"]').forEach((panel) => stalePanels.add(panel));
  const visible = document.querySelector('[role="tabpanel"]:not([hidden])');
  return visible ? loadPanel(visible) : undefined;
}
const refreshPlotsSoon = coalesce(refreshPlots, 8000);

function selectTab(tab, focus) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  const panel = $(tab.getAttribute("aria-controls"));
  if (stalePanels.has(panel)) loadPanel(panel);
  else if (window.Plotly) panel.querySelectorAll(".js-plotly-plot").forEach((plot) => window.Plotly.Plots.resize(plot));
}

function setUpTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => selectTab(tab, false));
    tab.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      selectTab(tabs[(moves[event.key] + tabs.length) % tabs.length], true);
    });
  });
}

// --- the log ---------------------------------------------------------------------------------------

function logLine(entry) {
  const line = document.createElement("span");
  line.className = `log-line ${entry.level}`;
  line.dataset.id = String(entry.id);
  const when = String(entry.created_at || "").slice(0, 19).replace("T", " ");
  const trial = entry.trial_number != null ? ` trial ${entry.trial_number}` : "";
  line.textContent = `${when} ${String(entry.level).toUpperCase()}${trial}: ${entry.message}${entry.details ? `\n${entry.details}` : ""}\n`;
  return line;
}

async function pollLog() {
  const log = $("study-log");
  const entries = await fetchAllPages(`${api}/log/?after=${state.lastLogId}&page_size=500`);
  if (!entries.length) return;
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(...entries.filter((entry) => entry.id > state.lastLogId).map(logLine));
  state.lastLogId = Math.max(state.lastLogId, ...entries.map((entry) => entry.id));
  log.dataset.lastId = String(state.lastLogId);
  if (atBottom) log.scrollTop = log.scrollHeight;
}
const pollLogSoon = coalesce(pollLog, 1000);

// --- start ----------------------------------------------------------------------------------------

function setLiveStatus(status, detail) {
  const text = {
    connecting: "Connecting…",
    open: "Live",
    reconnecting: `Connection lost; retrying in ${detail} s`,
    closed: detail,
  }[status];
  $("live-status").textContent = text || "";
}

function start() {
  setUpTabs();
  const log = $("study-log");
  log.scrollTop = log.scrollHeight;
  $("cancel-form")?.addEventListener("submit", (event) => {
    if (!window.confirm("Cancel this study? Running trials stop; finished trials are kept.")) event.preventDefault();
  });
  refreshPlots();
  if (state.best) loadBest(state.best.number).catch((error) => console.warn(error));
  connectStudy(studyId, {
    onSnapshot: (progress, { initial }) => {
      applySnapshot(progress, { initial });
      if (initial) state.connectedBefore = true;
    },
    onEvent: handleEvent,
    onStatus: setLiveStatus,
  });
  // A safety net for servers whose events stay in another process: the log is read now
  // and then while the study is active.
  window.setInterval(() => { if (ACTIVE.has(state.status)) pollLogSoon(); }, 15000);
}

start();
