// The 3D architecture viewer: draws a trial's architecture JSON (workers/engine/architecture.py)
// with three.js. Used by the trial page (static/js/trial.js), the compare page and the study
// page (its best trial).
//
//   const viewer = renderArchitecture(element, architecture, options)
//
// element        a container, usually <div class="viewer">; the viewer adds a <canvas>, a
//                legend and a div.tooltip to it (and a <p class="viewer-empty"> instead when
//                there is nothing to draw or no WebGL).
// architecture   {"layers": [{index, name, type, units, filters, kernel_size, activation,
//                params, input_shape, output_shape}, ...], total_params, family}
// options        colorBy      "type" (default) or a HEALTH_METRICS name
//                health       per-layer values {metric: {layerName: number}}, or give
//                healthMetrics  a trial's health_metrics ({score, components, metrics}) and
//                gradientNorms  details.json's gradient_norms ({layerName: norm});
//                               both are turned into `health` by layerHealth()
//                training     start with the data-flow animation on
//                label        the canvas's accessible name (title: a prefix to the default)
//                compact      a smaller legend (compare page)
//
// Returns {setColorBy(name), setTraining(bool), toPNG() -> "data:image/png;..." | null,
//          resize(), dispose(), colorBy, metrics (names with data), empty (bool)}.
// Keyboard: the canvas is focusable; ← → (or Home/End) step through the layers and show
// each one's tooltip; Escape hides it. OrbitControls' own mouse and touch gestures rotate,
// zoom and pan.

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

// Layer kinds in legend order: a Keras class name matches the first pattern that fits.
export const LAYER_KINDS = [
  { kind: "input", label: "Input", color: "#94a3b8", pattern: /^input/i, thickness: 0.35 },
  { kind: "embedding", label: "Embedding", color: "#f472b6", pattern: /embedding/i, thickness: 0.9 },
  { kind: "conv", label: "Convolution", color: "#3b82f6", pattern: /conv/i, thickness: 0.9 },
  { kind: "recurrent", label: "Recurrent (LSTM/GRU)", color: "#a855f7", pattern: /lstm|gru|rnn|bidirectional/i, thickness: 1.0 },
  { kind: "pool", label: "Pooling", color: "#06b6d4", pattern: /pool/i, thickness: 0.45 },
  { kind: "norm", label: "Normalization", color: "#eab308", pattern: /normalization/i, thickness: 0.22 },
  { kind: "activation", label: "Activation", color: "#f97316", pattern: /^(activation|relu|leakyrelu|prelu|elu|softmax)$/i, thickness: 0.22 },
  { kind: "dropout", label: "Dropout", color: "#64748b", pattern: /dropout/i, thickness: 0.22 },
  { kind: "reshape", label: "Flatten / reshape", color: "#fb7185", pattern: /flatten|reshape|permute|repeat/i, thickness: 0.3 },
  { kind: "dense", label: "Dense", color: "#22c55e", pattern: /^dense$|einsumdense/i, thickness: 0.6 },
  { kind: "other", label: "Other", color: "#e2e8f0", pattern: /.*/, thickness: 0.5 },
];

const HEALTHY = new THREE.Color("#16a34a");
const FAIR = new THREE.Color("#eab308");
const UNHEALTHY = new THREE.Color("#dc2626");
const NO_DATA = "#475569";

// Per-layer health metrics the viewer can colour by. badness(value) is in [0, 1]: 0 healthy
// (green), 1 unhealthy (red); the thresholds are workers/engine/health.py's.
export const HEALTH_METRICS = {
  gradient_norm: {
    label: "Gradient norm",
    format: (v) => (v === null || v === undefined ? "—" : Number(v).toExponential(2)),
    badness(value) {
      if (!Number.isFinite(value) || value <= 0) return 1;
      const lg = Math.log10(value);
      if (lg < -5) return clamp((-5 - lg) / 2, 0, 1); // 1e-7 (vanishing) is fully red
      if (lg > 2) return clamp(lg - 2, 0, 1); // 1e3 (exploding) is fully red
      return 0;
    },
    legend: ["healthy 1e-5 … 1e2", "vanishing < 1e-7 or exploding > 1e3"],
  },
  dead_fraction: {
    label: "Dead units",
    format: percent,
    badness: (value) => clamp(Number(value) / 0.5, 0, 1), // half the units dead is fully red
    legend: ["no dead units", "half or more dead"],
  },
  saturated_fraction: {
    label: "Saturation",
    format: percent,
    badness: (value) => clamp(Number(value) / 0.5, 0, 1),
    legend: ["no saturated units", "half or more saturated"],
  },
};

const GAP = 0.8; // between layers along the axis

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

function percent(value) {
  return value === null || value === undefined ? "—" : `${(100 * Number(value)).toFixed(1)} %`;
}

export function layerKind(type) {
  const name = String(type || "");
  return LAYER_KINDS.find((entry) => entry.pattern.test(name));
}

function lastDimension(shape) {
  if (!Array.isArray(shape) || shape.length === 0) return null;
  const first = Array.isArray(shape[0]) ? shape[0] : shape; // several tensors: the first
  const last = first[first.length - 1];
  return Number.isFinite(last) ? last : null;
}

// The number a layer is sized by: its units or filters, else the width of its output.
export function layerSize(layer) {
  for (const value of [layer.units, layer.filters, lastDimension(layer.output_shape)]) {
    if (Number.isFinite(value) && value > 0) return value;
  }
  return 1;
}

// Side of the square cross-section: log-scaled, clamped, so 10 and 8192 both stay readable.
export function layerSide(size) {
  return clamp(0.3 + 0.32 * Math.log2(size + 1), 0.6, 4.5);
}

function orderedLayers(architecture) {
  const layers = (architecture && Array.isArray(architecture.layers) ? architecture.layers : [])
    .filter((layer) => layer && typeof layer === "object");
  if (layers.every((layer) => Number.isFinite(layer.index))) {
    return [...layers].sort((a, b) => a.index - b.index);
  }
  return layers;
}

// Boxes along the x axis, centred on the origin. Pure: no WebGL needed.
export function layoutArchitecture(architecture) {
  const boxes = orderedLayers(architecture).map((layer, position) => {
    const kind = layerKind(layer.type);
    const side = layerSide(layerSize(layer));
    return { layer, position, kind, width: kind.thickness, height: side, depth: side, x: 0 };
  });
  let cursor = 0;
  for (const box of boxes) {
    box.x = cursor + box.width / 2;
    cursor += box.width + GAP;
  }
  const length = Math.max(0, cursor - GAP);
  for (const box of boxes) box.x -= length / 2;
  const tallest = boxes.reduce((most, box) => Math.max(most, box.height), 0);
  return { boxes, length, tallest };
}

// {metric: {layerName: value}} from a trial's health_metrics and details' gradient norms.
export function layerHealth(healthMetrics, gradientNorms) {
  const metrics = (healthMetrics && healthMetrics.metrics) || {};
  const health = {};
  const norms = { ...(gradientNorms || {}) };
  // Flagged layers count as unhealthy even when the norms themselves were not saved.
  for (const name of metrics.vanishing_layers || []) if (!(name in norms)) norms[name] = 0;
  for (const name of metrics.exploding_layers || []) if (!(name in norms)) norms[name] = Infinity;
  if (Object.keys(norms).length) health.gradient_norm = norms;
  if (metrics.dead_units_by_layer && Object.keys(metrics.dead_units_by_layer).length) {
    health.dead_fraction = { ...metrics.dead_units_by_layer };
  }
  if (metrics.saturated_by_layer && Object.keys(metrics.saturated_by_layer).length) {
    health.saturated_fraction = { ...metrics.saturated_by_layer };
  }
  return health;
}

export function availableMetrics(health) {
  return Object.keys(HEALTH_METRICS).filter((name) => health && health[name] && Object.keys(health[name]).length);
}

// The colour of one box: by kind, or by the chosen metric's badness (grey without data).
export function boxColor(box, colorBy, health) {
  if (!colorBy || colorBy === "type" || !HEALTH_METRICS[colorBy]) return new THREE.Color(box.kind.color);
  const values = (health && health[colorBy]) || {};
  if (!(box.layer.name in values)) return new THREE.Color(NO_DATA);
  const value = values[box.layer.name];
  const bad = HEALTH_METRICS[colorBy].badness(value === null ? NaN : Number(value));
  return bad <= 0.5 ? HEALTHY.clone().lerp(FAIR, bad * 2) : FAIR.clone().lerp(UNHEALTHY, (bad - 0.5) * 2);
}

function shapeText(shape) {
  if (!Array.isArray(shape)) return "—";
  if (shape.some(Array.isArray)) return shape.map(shapeText).join(" + ");
  return `(${shape.map((dim) => (dim === null ? "batch" : dim)).join(", ")})`;
}

// Tooltip rows for a layer: [label, text] pairs (rendered with textContent, never as HTML).
export function layerFacts(layer, health) {
  const rows = [["Type", String(layer.type ?? "—")]];
  if (Number.isFinite(layer.units)) rows.push(["Units", String(layer.units)]);
  if (Number.isFinite(layer.filters)) rows.push(["Filters", String(layer.filters)]);
  if (Array.isArray(layer.kernel_size)) rows.push(["Kernel", layer.kernel_size.join("×")]);
  if (layer.activation) rows.push(["Activation", String(layer.activation)]);
  rows.push(["Parameters", Number(layer.params || 0).toLocaleString("en")]);
  rows.push(["Output shape", shapeText(layer.output_shape)]);
  for (const [name, metric] of Object.entries(HEALTH_METRICS)) {
    const values = health && health[name];
    if (values && layer.name in values) rows.push([metric.label, metric.format(values[layer.name])]);
  }
  return rows;
}

function emptyViewer(element, message) {
  const note = document.createElement("p");
  note.className = "viewer-empty";
  note.textContent = message;
  Object.assign(note.style, { color: "#e2e8f0", padding: "1rem", margin: "0" });
  element.querySelectorAll(":scope > .viewer-empty").forEach((old) => old.remove());
  element.append(note);
  return {
    empty: true,
    colorBy: "type",
    metrics: [],
    setColorBy() {},
    setTraining() {},
    toPNG: () => null,
    resize() {},
    dispose() {
      note.remove();
    },
  };
}

function makeOverlay(element, className, style) {
  const div = document.createElement("div");
  div.className = className;
  Object.assign(div.style, style);
  element.append(div);
  return div;
}

function legendRow(color, text, gradient = false) {
  const row = document.createElement("div");
  Object.assign(row.style, { display: "flex", alignItems: "center", gap: ".35rem" });
  const swatch = document.createElement("span");
  Object.assign(swatch.style, {
    display: "inline-block", width: gradient ? "3rem" : ".8rem", height: ".8rem", borderRadius: ".15rem",
    background: color, flex: "none",
  });
  const label = document.createElement("span");
  label.textContent = text;
  row.append(swatch, label);
  return row;
}

export function renderArchitecture(element, architecture, options = {}) {
  const layout = layoutArchitecture(architecture);
  if (!layout.boxes.length) {
    return emptyViewer(element, "No architecture recorded for this trial yet: it appears when the trial's model is built.");
  }
  element.querySelectorAll(":scope > .viewer-empty").forEach((old) => old.remove());
  const health = options.health || layerHealth(options.healthMetrics, options.gradientNorms);
  let colorBy = "type";

  let renderer;
  try {
    // preserveDrawingBuffer: toPNG reads the canvas after the frame was shown.
    renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  } catch (error) {
    return emptyViewer(element, "The 3D view needs WebGL, which this browser does not offer; the layers table lists the same layers.");
  }
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setClearColor(0x0f172a, 1);
  const canvas = renderer.domElement;
  canvas.tabIndex = 0;
  Object.assign(canvas.style, { display: "block", width: "100%", height: "100%" });
  if (getComputedStyle(element).position === "static") element.style.position = "relative";
  canvas.setAttribute("role", "img");
  canvas.setAttribute(
    "aria-label",
    options.label
      || `${options.title ? `${options.title}: ` : ""}3D view of the model: ${layout.boxes.length} layers, ${Number(architecture.total_params || 0).toLocaleString("en")} parameters. Use the left and right arrow keys to step through the layers.`,
  );
  element.append(canvas);

  const scene = new THREE.Scene();
  scene.add(new THREE.AmbientLight(0xffffff, 1.2));
  const sun = new THREE.DirectionalLight(0xffffff, 2.2);
  sun.position.set(-4, 8, 10);
  scene.add(sun);

  const camera = new THREE.PerspectiveCamera(40, 1, 0.1, 2000);
  const controls = new OrbitControls(camera, canvas);
  controls.enableDamping = false; // render on demand: no frame loop while nothing moves
  controls.screenSpacePanning = true;
  let userMoved = false;
  controls.addEventListener("start", () => { userMoved = true; });
  controls.addEventListener("change", () => requestRender());

  const meshes = [];
  const disposables = [];
  for (const box of layout.boxes) {
    const geometry = new THREE.BoxGeometry(box.width, box.height, box.depth);
    const material = new THREE.MeshStandardMaterial({
      roughness: 0.55, metalness: 0.05, transparent: box.kind.kind === "dropout", opacity: box.kind.kind === "dropout" ? 0.45 : 1,
    });
    const mesh = new THREE.Mesh(geometry, material);
    mesh.position.x = box.x;
    mesh.userData.box = box;
    const edges = new THREE.LineSegments(new THREE.EdgesGeometry(geometry), new THREE.LineBasicMaterial({ color: 0x0f172a, transparent: true, opacity: 0.55 }));
    mesh.add(edges);
    scene.add(mesh);
    meshes.push(mesh);
    disposables.push(geometry, material, edges.geometry, edges.material);
  }
  // A thin line through the layers: the data path.
  const axisGeometry = new THREE.BufferGeometry().setFromPoints([
    new THREE.Vector3(-layout.length / 2 - 0.3, 0, 0), new THREE.Vector3(layout.length / 2 + 0.3, 0, 0),
  ]);
  const axisMaterial = new THREE.LineBasicMaterial({ color: 0x64748b });
  scene.add(new THREE.Line(axisGeometry, axisMaterial));
  disposables.push(axisGeometry, axisMaterial);

  // Training: particles flowing along the axis, and a pulse travelling through the boxes.
  const PARTICLES = Math.min(400, 40 + layout.boxes.length * 18);
  const seeds = Array.from({ length: PARTICLES }, () => [Math.random(), Math.random() * 2 - 1, Math.random() * 2 - 1]);
  const particleGeometry = new THREE.BufferGeometry();
  particleGeometry.setAttribute("position", new THREE.BufferAttribute(new Float32Array(PARTICLES * 3), 3));
  const particleMaterial = new THREE.PointsMaterial({ color: 0xfde68a, size: 0.12, transparent: true, opacity: 0.9, depthWrite: false });
  const particles = new THREE.Points(particleGeometry, particleMaterial);
  particles.visible = false;
  scene.add(particles);
  disposables.push(particleGeometry, particleMaterial);

  const legend = makeOverlay(element, "viewer-legend", {
    position: "absolute", left: ".5rem", bottom: ".5rem", maxWidth: "calc(100% - 1rem)", display: "flex", flexWrap: "wrap",
    gap: ".2rem .7rem", padding: ".3rem .5rem", borderRadius: ".35rem", background: "rgba(15, 23, 42, .78)", color: "#f8fafc",
    fontSize: options.compact ? ".72rem" : ".8rem", pointerEvents: "none",
  });
  legend.setAttribute("aria-hidden", "true"); // the select and the layers table say the same
  const tooltip = makeOverlay(element, "tooltip", { left: "0", top: "0", maxWidth: "16rem", zIndex: "2" });
  tooltip.hidden = true;
  tooltip.setAttribute("role", "status");

  function drawLegend() {
    legend.replaceChildren();
    if (colorBy === "type") {
      const seen = new Set(layout.boxes.map((box) => box.kind.kind));
      for (const entry of LAYER_KINDS) if (seen.has(entry.kind)) legend.append(legendRow(entry.color, entry.label));
      return;
    }
    const metric = HEALTH_METRICS[colorBy];
    legend.append(legendRow(`linear-gradient(90deg, #${HEALTHY.getHexString()}, #${FAIR.getHexString()}, #${UNHEALTHY.getHexString()})`, `${metric.label}: ${metric.legend[0]} → ${metric.legend[1]}`, true));
    legend.append(legendRow(NO_DATA, "not measured"));
  }

  function paint() {
    for (const mesh of meshes) mesh.material.color.copy(boxColor(mesh.userData.box, colorBy, health));
    drawLegend();
    if (fitted) fit(); // the legend's height changed
    else requestRender();
  }

  // --- camera fit and resize ---
  let bottomLimit = -1;
  // From the front and a little above; a narrow view looks more along the chain, so a long
  // model is not drawn tiny on a phone.
  const WIDE_VIEW = new THREE.Vector3(-0.3, 0.35, 1).normalize();
  const NARROW_VIEW = new THREE.Vector3(-0.8, 0.45, 0.8).normalize();
  const half = new THREE.Vector3(layout.length / 2 + 0.2, layout.tallest / 2, layout.tallest / 2);
  const corners = [-1, 1].flatMap((x) => [-1, 1].flatMap((y) => [-1, 1].map((z) => new THREE.Vector3(x * half.x, y * half.y, z * half.z))));

  // The nearest camera along VIEW_DIRECTION that still shows every corner of the layers'
  // bounding box (bisection on the distance: perspective makes the near end larger).
  function fitDistance() {
    const point = new THREE.Vector3();
    const direction = camera.aspect >= 1.5 ? WIDE_VIEW : NARROW_VIEW;
    const fits = (distance) => {
      camera.position.copy(direction).multiplyScalar(distance);
      camera.lookAt(0, 0, 0);
      camera.updateMatrixWorld();
      return corners.every((corner) => {
        point.copy(corner).applyMatrix4(camera.matrixWorldInverse);
        if (point.z > -camera.near) return false; // behind the camera, or too close
        point.applyMatrix4(camera.projectionMatrix);
        return Math.abs(point.x) <= 0.9 && point.y <= 0.85 && point.y >= bottomLimit + 0.05;
      });
    };
    let near = 0.5;
    let far = 1000;
    for (let step = 0; step < 40; step += 1) {
      const middle = (near + far) / 2;
      if (fits(middle)) far = middle;
      else near = middle;
    }
    fits(far);
    camera.far = Math.max(100, far * 4);
  }

  let fitted = false;
  function fit() {
    fitted = true;
    const width = element.clientWidth || 300;
    const height = element.clientHeight || 200;
    renderer.setSize(width, height, false);
    legend.style.fontSize = options.compact || width < 480 ? ".7rem" : ".8rem";
    // Draw the model centred in the area above the legend (a taller view, its bottom cut).
    const legendHeight = Math.min(legend.offsetHeight + 8, height / 2);
    camera.aspect = width / (height + legendHeight); // of the full view: no distortion
    camera.setViewOffset(width, height + legendHeight, 0, legendHeight, width, height);
    bottomLimit = -1 + (2 * legendHeight) / height;
    if (!userMoved) {
      camera.updateProjectionMatrix();
      fitDistance();
      controls.target.set(0, 0, 0);
      controls.update();
    }
    camera.updateProjectionMatrix();
    requestRender();
  }
  const resizeObserver = typeof ResizeObserver === "function" ? new ResizeObserver(() => fit()) : null;
  if (resizeObserver) resizeObserver.observe(element);
  const onWindowResize = () => fit();
  window.addEventListener("resize", onWindowResize);

  // --- rendering: on demand, or every frame while training ---
  let training = false;
  let frame = 0;
  let disposed = false;
  const started = performance.now();
  let hovered = null;

  function requestRender() {
    if (!frame && !disposed) frame = requestAnimationFrame(draw);
  }

  function animateTraining(time) {
    const positions = particleGeometry.attributes.position.array;
    const start = -layout.length / 2 - 0.3;
    const span = layout.length + 0.6;
    seeds.forEach(([offset, dy, dz], i) => {
      const t = (offset + time * 0.12) % 1;
      const x = start + t * span;
      const box = layout.boxes.reduce((near, b) => (Math.abs(b.x - x) < Math.abs(near.x - x) ? b : near), layout.boxes[0]);
      positions[i * 3] = x;
      positions[i * 3 + 1] = dy * box.height * 0.42;
      positions[i * 3 + 2] = dz * box.depth * 0.42;
    });
    particleGeometry.attributes.position.needsUpdate = true;
    const phase = (time * 0.5) % 1;
    meshes.forEach((mesh, i) => {
      const wave = Math.cos(2 * Math.PI * (phase - i / Math.max(1, meshes.length)));
      mesh.material.emissive.setScalar(mesh === hovered ? 0.35 : 0.28 * Math.max(0, wave) ** 4);
    });
  }

  function draw() {
    frame = 0;
    if (disposed) return;
    if (training) {
      animateTraining((performance.now() - started) / 1000);
      requestRender();
    }
    renderer.render(scene, camera);
  }

  // --- hover and keyboard ---
  const raycaster = new THREE.Raycaster();
  const pointer = new THREE.Vector2();
  let focusIndex = -1;

  function highlight(mesh) {
    if (hovered === mesh) return;
    if (hovered && !training) hovered.material.emissive.setScalar(0);
    hovered = mesh;
    if (mesh) mesh.material.emissive.setScalar(0.35);
    requestRender();
  }

  function showTooltip(box, x, y) {
    tooltip.replaceChildren();
    const title = document.createElement("strong");
    title.textContent = String(box.layer.name ?? `layer ${box.position}`);
    tooltip.append(title);
    for (const [label, text] of layerFacts(box.layer, health)) {
      const row = document.createElement("div");
      row.textContent = `${label}: ${text}`;
      tooltip.append(row);
    }
    tooltip.hidden = false;
    const width = element.clientWidth;
    const height = element.clientHeight;
    const left = clamp(x + 14, 4, Math.max(4, width - tooltip.offsetWidth - 4));
    const top = clamp(y + 14, 4, Math.max(4, height - tooltip.offsetHeight - 4));
    tooltip.style.left = `${left}px`;
    tooltip.style.top = `${top}px`;
  }

  function hideTooltip() {
    tooltip.hidden = true;
    highlight(null);
  }

  function onPointerMove(event) {
    const rect = canvas.getBoundingClientRect();
    pointer.set(((event.clientX - rect.left) / rect.width) * 2 - 1, -((event.clientY - rect.top) / rect.height) * 2 + 1);
    raycaster.setFromCamera(pointer, camera);
    const hit = raycaster.intersectObjects(meshes, false)[0];
    if (!hit) {
      hideTooltip();
      return;
    }
    highlight(hit.object);
    showTooltip(hit.object.userData.box, event.clientX - rect.left, event.clientY - rect.top);
  }

  function focusLayer(index) {
    focusIndex = clamp(index, 0, meshes.length - 1);
    const mesh = meshes[focusIndex];
    highlight(mesh);
    const point = mesh.position.clone().setY(mesh.userData.box.height / 2).project(camera);
    const x = ((point.x + 1) / 2) * element.clientWidth;
    const y = ((1 - point.y) / 2) * element.clientHeight;
    showTooltip(mesh.userData.box, x, y);
  }

  function onKeyDown(event) {
    const moves = { ArrowRight: focusIndex + 1, ArrowLeft: focusIndex - 1, Home: 0, End: meshes.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      focusLayer(focusIndex < 0 && event.key === "ArrowLeft" ? meshes.length - 1 : moves[event.key]);
    } else if (event.key === "Escape") {
      hideTooltip();
    }
  }

  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerleave", hideTooltip);
  canvas.addEventListener("keydown", onKeyDown);
  canvas.addEventListener("blur", hideTooltip);

  const viewer = {
    empty: false,
    metrics: availableMetrics(health),
    get colorBy() {
      return colorBy;
    },
    setColorBy(name) {
      colorBy = name && name !== "type" && HEALTH_METRICS[name] ? name : "type";
      if (name && name !== "type" && !HEALTH_METRICS[name]) console.warn(`arch3d: unknown metric ${name}; colouring by layer type`);
      paint();
    },
    setTraining(on) {
      training = Boolean(on);
      particles.visible = training;
      if (!training) for (const mesh of meshes) mesh.material.emissive.setScalar(mesh === hovered ? 0.35 : 0);
      requestRender();
    },
    toPNG() {
      if (disposed) return null;
      renderer.render(scene, camera);
      return canvas.toDataURL("image/png");
    },
    resize: fit,
    dispose() {
      if (disposed) return;
      disposed = true;
      if (frame) cancelAnimationFrame(frame);
      resizeObserver?.disconnect();
      window.removeEventListener("resize", onWindowResize);
      canvas.removeEventListener("pointermove", onPointerMove);
      canvas.removeEventListener("pointerleave", hideTooltip);
      canvas.removeEventListener("keydown", onKeyDown);
      canvas.removeEventListener("blur", hideTooltip);
      controls.dispose();
      for (const item of disposables) item.dispose();
      renderer.dispose();
      renderer.forceContextLoss();
      canvas.remove();
      legend.remove();
      tooltip.remove();
    },
  };
  viewer.setColorBy(options.colorBy || "type");
  viewer.setTraining(Boolean(options.training));
  fit();
  return viewer;
}
