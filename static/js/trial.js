// The trial page (templates/trials/detail.html): the 3D viewer, the charts, and live updates
// while the trial trains. The server renders the true state; this script draws and updates.
//
// Element ids (stable: the headless browser tests use them):
//   #trial-data            JSON (json_script) the view hands over: study, trial, architecture,
//                          health_metrics, epochs, details (or null) and the API urls
//   #architecture-viewer   the 3D viewer's container (static/js/arch3d.js)
//   #color-by              <select>: colour the layers by type or by a health metric
//   #save-png              button: download the viewer as a PNG
//   #curves                training curves (Plotly; grow live on trial.epoch events)
//   #confusion             confusion matrix (Plotly heatmap from the API)
//   #gradient-flow         gradient norm per layer (bar chart from details)
//   #weights               weight and bias histograms of the layer in #weights-layer
//   #activations           activation maps of the image in #activation-image (CNNs)
//   #trial-status, #tile-accuracy, #tile-health, #tile-total, #tile-duration,
//   #tile-epochs, #trial-progress, #live-notice   updated live
//   #params-table, #health-table, #layers-table, #trial-log   server-rendered
// A chart that cannot be drawn holds a <p> saying why (class details-missing or
// plot-message) instead of a plot.

import { renderArchitecture } from "./arch3d.js";

const data = JSON.parse(document.getElementById("trial-data").textContent);
const trialNumber = data.trial.number;
const details = data.details; // null: no details.json for this trial
const PLOT_CONFIG = { responsive: true, displaylogo: false };
const BASE_LAYOUT = { margin: { l: 56, r: 16, t: 48, b: 48 }, autosize: true, paper_bgcolor: "rgba(0,0,0,0)" };
const VANISHING = 1e-7; // workers/engine/health.py
const EXPLODING = 1e3;
const $ = (id) => document.getElementById(id);

function say(element, text, className = "plot-message") {
  const note = document.createElement("p");
  note.className = `muted ${className}`;
  note.textContent = text;
  element.replaceChildren(note);
}

function plotly() {
  return window.Plotly || null;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function fixed(value, digits = 4) {
  return value === null || value === undefined || !Number.isFinite(Number(value)) ? "—" : Number(value).toFixed(digits);
}

function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, seconds);
  if (s < 60) return `${s.toFixed(1)} s`;
  const minutes = Math.floor(Math.round(s) / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(s) % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function layerOrder() {
  const layers = (data.architecture && data.architecture.layers) || [];
  return layers.map((layer) => layer.name);
}

function inLayerOrder(names) {
  const order = layerOrder();
  const rank = (name) => (order.includes(name) ? order.indexOf(name) : order.length);
  return [...names].sort((a, b) => rank(a) - rank(b));
}

// --- the 3D viewer ------------------------------------------------------------------------

const viewerElement = $("architecture-viewer");
const colorSelect = $("color-by");
const pngButton = $("save-png");
let viewer = null;

function drawViewer(architecture, training) {
  viewer?.dispose();
  viewer = renderArchitecture(viewerElement, architecture, {
    healthMetrics: data.health_metrics,
    gradientNorms: details ? details.gradient_norms : null,
    colorBy: colorSelect ? colorSelect.value : "type",
    training,
  });
  if (pngButton) pngButton.disabled = viewer.empty;
  if (colorSelect) colorSelect.disabled = viewer.empty;
}

colorSelect?.addEventListener("change", () => viewer?.setColorBy(colorSelect.value));
pngButton?.addEventListener("click", () => {
  const url = viewer?.toPNG();
  if (!url) return;
  const link = document.createElement("a");
  link.href = url;
  link.download = `study-${data.study.id}-trial-${trialNumber}-architecture.png`;
  document.body.append(link);
  link.click();
  link.remove();
});

// --- training curves, growing live ----------------------------------------------------------

const CURVES = {
  loss: { axis: 1, dash: "solid" },
  val_loss: { axis: 1, dash: "dot" },
  accuracy: { axis: 2, dash: "solid" },
  val_accuracy: { axis: 2, dash: "dot" },
};
const curvesElement = $("curves");
let curvesDrawn = false;
let lastEpoch = 0;

function curveTrace(name, x = [], y = []) {
  const axis = CURVES[name].axis === 1 ? "" : "2";
  return { type: "scatter", mode: "lines+markers", name, x, y, xaxis: `x${axis}`, yaxis: `y${axis}`, line: { dash: CURVES[name].dash } };
}

function curvesLayout() {
  const title = (text, x) => ({ text, x, y: 1, xref: "paper", yref: "paper", xanchor: "center", yanchor: "bottom", showarrow: false });
  return {
    ...BASE_LAYOUT,
    title: { text: `Training curves of trial ${trialNumber}` },
    hovermode: "x unified",
    xaxis: { domain: [0, 0.45], title: { text: "Epoch" } },
    xaxis2: { domain: [0.55, 1], title: { text: "Epoch" }, anchor: "y2" },
    yaxis: { anchor: "x" },
    yaxis2: { anchor: "x2" },
    annotations: [title("Loss", 0.225), title("Accuracy", 0.775)],
    legend: { orientation: "h", y: -0.25 },
  };
}

function figureFromEpochs(epochs) {
  const traces = Object.keys(CURVES).map((name) => curveTrace(name, epochs.map((e) => e.epoch), epochs.map((e) => e[name])));
  return { data: traces.filter((trace) => trace.y.some((v) => v !== null && v !== undefined)), layout: curvesLayout() };
}

function maxEpoch(traces) {
  let most = 0;
  for (const trace of traces || []) for (const x of Array.isArray(trace.x) ? trace.x : []) most = Math.max(most, Number(x) || 0);
  return most;
}

async function drawCurves() {
  const Plotly = plotly();
  if (!curvesElement) return;
  if (!Plotly) return say(curvesElement, "The charts library did not load; reload the page.");
  let figure;
  try {
    figure = await getJSON(data.urls.curves);
  } catch (error) {
    figure = figureFromEpochs(data.epochs); // the epochs the page was rendered with
  }
  if (!figure.data || !figure.data.length) {
    if (!data.trial.running) return say(curvesElement, figure.message || "The trial has no finished epochs.");
    figure = figureFromEpochs([]); // empty axes, ready to grow
  }
  curvesElement.replaceChildren();
  await Plotly.react(curvesElement, figure.data, { ...BASE_LAYOUT, ...figure.layout, legend: { orientation: "h", y: -0.25 } }, PLOT_CONFIG);
  curvesDrawn = true;
  lastEpoch = maxEpoch(figure.data);
}

async function extendCurves(epoch, metrics) {
  const Plotly = plotly();
  if (!Plotly || !curvesElement || epoch <= lastEpoch) return;
  lastEpoch = epoch; // before any await: a second event must not add this epoch again
  if (!curvesDrawn) {
    const figure = figureFromEpochs([]);
    curvesElement.replaceChildren();
    await Plotly.react(curvesElement, figure.data, figure.layout, PLOT_CONFIG);
    curvesDrawn = true;
  }
  const indices = [];
  const xs = [];
  const ys = [];
  for (const name of Object.keys(CURVES)) {
    const value = metrics ? metrics[name] : undefined;
    if (value === undefined || value === null || !Number.isFinite(Number(value))) continue;
    let index = curvesElement.data.findIndex((trace) => trace.name === name);
    if (index < 0) {
      await Plotly.addTraces(curvesElement, curveTrace(name));
      index = curvesElement.data.length - 1;
    }
    indices.push(index);
    xs.push([epoch]);
    ys.push([Number(value)]);
  }
  if (indices.length) Plotly.extendTraces(curvesElement, { x: xs, y: ys }, indices);
}

// --- confusion matrix, gradient flow, weights, activations -----------------------------------

async function drawConfusion() {
  const element = $("confusion");
  const Plotly = plotly();
  if (!element || !Plotly) return;
  try {
    const figure = await getJSON(data.urls.confusion);
    if (!figure.data || !figure.data.length) return say(element, figure.message || "No confusion matrix for this trial.");
    element.replaceChildren();
    await Plotly.react(element, figure.data, { ...BASE_LAYOUT, ...figure.layout }, PLOT_CONFIG);
  } catch (error) {
    say(element, "The confusion matrix could not be loaded; reload the page to try again.");
  }
}

function drawGradientFlow() {
  const element = $("gradient-flow");
  const Plotly = plotly();
  if (!element || !details || !Plotly) return;
  const norms = details.gradient_norms || {};
  const names = inLayerOrder(Object.keys(norms));
  if (!names.length) return say(element, "No gradient norms were recorded for this trial.", "details-missing");
  const values = names.map((name) => norms[name]);
  const flagged = (v) => v === null || !(v >= VANISHING && v <= EXPLODING);
  element.replaceChildren();
  Plotly.react(
    element,
    [{
      type: "bar", x: names, y: values.map((v) => (v === null ? null : Math.max(v, 1e-12))),
      marker: { color: values.map((v) => (flagged(v) ? "#dc2626" : "#2563eb")) },
      hovertemplate: "%{x}<br>gradient norm %{y:.3e}<extra></extra>",
    }],
    {
      ...BASE_LAYOUT,
      title: { text: "Gradient norm per layer (probe batch)" },
      yaxis: { type: "log", title: { text: "L2 norm of the kernel gradient" }, exponentformat: "power" },
      xaxis: { type: "category", automargin: true },
      shapes: [VANISHING, EXPLODING].map((y) => ({ type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { dash: "dot", color: "#dc2626", width: 1 } })),
      annotations: [
        { xref: "paper", x: 1, y: Math.log10(VANISHING), yref: "y", text: "vanishing", showarrow: false, xanchor: "right", yanchor: "bottom", font: { color: "#b91c1c", size: 11 } },
        { xref: "paper", x: 1, y: Math.log10(EXPLODING), yref: "y", text: "exploding", showarrow: false, xanchor: "right", yanchor: "top", font: { color: "#b91c1c", size: 11 } },
      ],
    },
    PLOT_CONFIG,
  );
}

function histogramTrace(histogram, name, axis, color) {
  const bins = histogram.bins || [];
  const counts = histogram.counts || [];
  return {
    type: "bar", name, xaxis: `x${axis}`, yaxis: `y${axis}`, marker: { color },
    x: counts.map((_, i) => (bins[i] + bins[i + 1]) / 2),
    y: counts,
    width: counts.map((_, i) => bins[i + 1] - bins[i]),
    hovertemplate: `${name}<br>%{x:.3g}: %{y}<extra></extra>`,
  };
}

function drawWeights() {
  const element = $("weights");
  const select = $("weights-layer");
  const Plotly = plotly();
  if (!element || !details || !Plotly) return;
  const histograms = details.weight_histograms || {};
  const names = inLayerOrder(Object.keys(histograms));
  if (!names.length) {
    select?.closest(".plot-control")?.setAttribute("hidden", "");
    return say(element, "No weight histograms were recorded for this trial.", "details-missing");
  }
  if (select && !select.options.length) {
    for (const name of names) select.add(new Option(name, name));
    select.addEventListener("change", drawWeights);
  }
  const layer = (select && select.value) || names[0];
  const { weights, bias } = histograms[layer];
  const traces = [];
  if (weights && weights.counts && weights.counts.length) traces.push(histogramTrace(weights, "weights", "", "#2563eb"));
  const hasBias = Boolean(bias && bias.counts && bias.counts.length);
  if (hasBias) traces.push(histogramTrace(bias, "bias", "2", "#f97316"));
  if (!traces.length) return say(element, `Layer ${layer}'s weights are all non-finite: nothing to draw.`);
  const stacked = element.clientWidth < 640 || !hasBias;
  const nonfinite = (weights?.nonfinite || 0) + (bias?.nonfinite || 0);
  const layout = {
    ...BASE_LAYOUT,
    title: { text: `${layer}: weights${hasBias ? " and bias" : " (no bias)"}${nonfinite ? ` · ${nonfinite} non-finite values left out` : ""}` },
    showlegend: false,
    bargap: 0.02,
    height: stacked && hasBias ? 520 : 340,
    xaxis: { title: { text: "weight value" } },
    yaxis: { title: { text: "count" } },
  };
  if (hasBias) {
    layout.grid = stacked ? { rows: 2, columns: 1, pattern: "independent" } : { rows: 1, columns: 2, pattern: "independent" };
    layout.xaxis2 = { title: { text: "bias value" } };
    layout.yaxis2 = { title: { text: "count" } };
  }
  element.replaceChildren();
  Plotly.react(element, traces, layout, PLOT_CONFIG);
}

function drawActivations() {
  const element = $("activations");
  const select = $("activation-image");
  const Plotly = plotly();
  if (!element || !details || !Plotly || !select) return; // no select: not a CNN (the server said so)
  const maps = details.activation_maps || [];
  if (!maps.length) {
    select.closest(".plot-control")?.setAttribute("hidden", "");
    return say(element, "No activation maps were recorded for this trial.", "details-missing");
  }
  if (!select.options.length) {
    maps.forEach((map, i) => select.add(new Option(`Image ${Number(map.image_index ?? i) + 1}`, String(i))));
    select.addEventListener("change", drawActivations);
  }
  const map = maps[Number(select.value) || 0];
  const channels = map.channels || [];
  const columns = element.clientWidth < 640 ? 2 : 4;
  const rows = Math.max(1, Math.ceil(channels.length / columns));
  const layout = {
    ...BASE_LAYOUT,
    title: { text: `Activations of ${map.layer}, validation image ${Number(map.image_index ?? 0) + 1}` },
    grid: { rows, columns, pattern: "independent" },
    coloraxis: { colorscale: "Viridis" },
    height: 90 + rows * (columns === 2 ? 170 : 190),
    annotations: [],
  };
  const traces = channels.map((z, c) => {
    const suffix = c === 0 ? "" : String(c + 1);
    layout[`xaxis${suffix}`] = { visible: false, constrain: "domain" };
    layout[`yaxis${suffix}`] = { visible: false, autorange: "reversed", scaleanchor: `x${suffix}`, constrain: "domain" };
    layout.annotations.push({ text: `channel ${c + 1}`, showarrow: false, xref: `x${suffix} domain`, yref: `y${suffix} domain`, x: 0.5, y: 1, yanchor: "bottom", font: { size: 11 } });
    return { type: "heatmap", z, xaxis: `x${suffix}`, yaxis: `y${suffix}`, coloraxis: "coloraxis", hovertemplate: `channel ${c + 1}<br>row %{y}, column %{x}<br>%{z}<extra></extra>` };
  });
  if (!traces.length) return say(element, "The activation map has no channels.");
  element.replaceChildren();
  Plotly.react(element, traces, layout, PLOT_CONFIG);
}

// --- live updates ------------------------------------------------------------------------------

let live = null;
let running = Boolean(data.trial.running);
let refreshing = false;
let durationTimer = null;

function notice(text, reload = false) {
  const element = $("live-notice");
  if (!element) return;
  element.replaceChildren(document.createTextNode(text));
  if (reload) {
    const link = document.createElement("a");
    link.href = window.location.href;
    link.textContent = "Reload the page";
    element.append(" ", link, " for the full analysis.");
  }
  element.hidden = false;
}

function setText(id, text) {
  const element = $(id);
  if (element) element.textContent = text;
}

function setProgress(epoch, epochs, fraction) {
  if (epoch && epochs) setText("tile-epochs", `${epoch} / ${epochs}`);
  const bar = $("trial-progress");
  if (bar && fraction !== null && fraction !== undefined && Number.isFinite(Number(fraction))) bar.value = Number(fraction);
  const label = bar ? document.querySelector('label[for="trial-progress"]') : null;
  if (label && epoch) label.textContent = `Training epoch ${epoch}${epochs ? ` of ${epochs}` : ""}`;
}

function startDurationClock() {
  let seconds = data.trial.duration_s;
  if (!running || seconds === null || seconds === undefined || durationTimer) return;
  const started = performance.now() - seconds * 1000;
  durationTimer = setInterval(() => setText("tile-duration", formatDuration((performance.now() - started) / 1000)), 1000);
}

const STATUS_LABELS = { complete: "Complete", pruned: "Pruned", unhealthy: "Unhealthy", cancelled: "Cancelled", failed: "Failed", RUNNING: "Running" };

function setStatus(status) {
  const badge = $("trial-status");
  if (!badge) return;
  badge.className = `status ${status}`;
  badge.textContent = STATUS_LABELS[status] || status;
}

function finished(result) {
  if (!running) return;
  running = false;
  viewer?.setTraining(false);
  clearInterval(durationTimer);
  durationTimer = null;
  const status = result.status || result.outcome || result.state || "complete";
  setStatus(status);
  setText("tile-accuracy", fixed(result.accuracy));
  setText("tile-health", fixed(result.health_score));
  setText("tile-total", fixed(result.total_score));
  if (Number.isFinite(result.seconds)) setText("tile-duration", formatDuration(result.seconds));
  else if (Number.isFinite(result.duration_s)) setText("tile-duration", formatDuration(result.duration_s));
  $("trial-progress")?.closest("p")?.setAttribute("hidden", "");
  notice(`The trial finished: ${STATUS_LABELS[status] || status}.`, true);
  drawCurves();
  drawConfusion();
  live?.close?.();
}

// The trial's row, when events may have been missed (the snapshot-only channel layer, or a
// reconnect): redraw the curves, and catch a finish that happened in between.
async function refreshFromApi() {
  if (refreshing) return;
  refreshing = true;
  try {
    const trial = await getJSON(data.urls.trial);
    if ((!viewer || viewer.empty) && trial.architecture && (trial.architecture.layers || []).length) {
      data.architecture = trial.architecture;
      drawViewer(data.architecture, trial.state === "RUNNING");
    }
    if (trial.state !== "RUNNING" && trial.state !== "WAITING") finished(trial);
    else await drawCurves();
  } catch (error) {
    // A failed refresh is retried on the next snapshot.
  } finally {
    refreshing = false;
  }
}

function onSnapshot(message) {
  const progress = message && typeof message.progress === "object" ? message.progress : message;
  if (!progress || !running) return;
  const mine = (progress.running_trials || []).find((entry) => entry.number === trialNumber);
  if (mine) {
    if (data.trial.state === "WAITING") setStatus("RUNNING");
    if (!viewer || viewer.empty) refreshFromApi(); // the architecture came with trial.started
    viewer?.setTraining(true);
    setProgress(mine.epoch, mine.epochs, mine.fraction);
    if (Number(mine.epoch) - 1 > lastEpoch) refreshFromApi();
  } else if (data.trial.state === "RUNNING" || lastEpoch > 0) {
    refreshFromApi();
  }
}

function onEvent(event) {
  if (!event || event.trial !== trialNumber) return;
  switch (event.type) {
    case "trial.started":
      running = true;
      setStatus("RUNNING");
      if (!viewer || viewer.empty) {
        data.architecture = event.architecture || {};
        drawViewer(data.architecture, true);
      } else viewer.setTraining(true);
      break;
    case "trial.progress":
      viewer?.setTraining(true);
      setProgress(event.epoch, event.epochs, event.fraction);
      break;
    case "trial.epoch":
      viewer?.setTraining(true);
      setProgress(event.epoch, event.epochs, null);
      extendCurves(event.epoch, event.metrics);
      break;
    case "trial.finished":
      finished(event);
      break;
    default:
  }
}

function onStatus(status) {
  const state = typeof status === "string" ? status : status?.state;
  if (viewerElement) viewerElement.dataset.live = state || "";
}

// A tiny client for when static/js/live.js is not there: snapshot first, then events,
// reconnecting with backoff (docs/events.md). Close codes 4401 and 4404 are final.
function connectStudyFallback(studyId, { onSnapshot: snapshot, onEvent: event, onStatus: status } = {}) {
  let socket = null;
  let delay = 1000;
  let closed = false;
  const open = () => {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${window.location.host}/ws/studies/${studyId}/`);
    socket.addEventListener("open", () => { delay = 1000; status?.("open"); });
    socket.addEventListener("message", (message) => {
      let payload;
      try { payload = JSON.parse(message.data); } catch (error) { return; }
      if (payload.type === "study.snapshot") snapshot?.(payload.progress || {});
      else event?.(payload);
    });
    socket.addEventListener("close", (close) => {
      status?.("closed");
      if (closed || close.code === 4401 || close.code === 4404) return;
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 30000);
    });
  };
  open();
  return { close() { closed = true; socket?.close(); } };
}

async function connectLive() {
  if (!running && data.trial.state !== "WAITING") return;
  let connect = null;
  try {
    ({ connectStudy: connect } = await import("./live.js"));
  } catch (error) {
    connect = null; // not there (yet): use the tiny client
  }
  if (typeof connect !== "function") connect = connectStudyFallback;
  if (data.trial.state === "WAITING") running = true; // waits for trial.started
  live = connect(data.study.id, { onSnapshot, onEvent, onStatus });
}

// --- start ---------------------------------------------------------------------------------------

if (viewerElement) drawViewer(data.architecture, running);
if (!plotly()) {
  for (const id of ["curves", "confusion"]) if ($(id)) say($(id), "The charts library did not load; reload the page.");
}
drawCurves();
drawConfusion();
drawGradientFlow();
drawWeights();
drawActivations();
startDurationClock();
connectLive();
