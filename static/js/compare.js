// The compare page (templates/trials/compare.html): one small 3D viewer per chosen trial.
//
// Element ids (stable: the headless browser tests use them):
//   #compare-data            JSON (json_script): [{number, page, architecture, health_metrics}]
//   #compare-form            the GET form choosing trials (checkboxes named "trials")
//   #compare-table           params, metrics and health side by side (server-rendered)
//   #compare-viewer-<number> each trial's viewer (static/js/arch3d.js)
//   #compare-errors          what was wrong with the choice (server-rendered)

import { renderArchitecture } from "./arch3d.js";

const trials = JSON.parse(document.getElementById("compare-data").textContent);
const viewers = [];

for (const trial of trials) {
  const element = document.getElementById(`compare-viewer-${trial.number}`);
  if (!element) continue;
  const layers = (trial.architecture && trial.architecture.layers) || [];
  viewers.push(
    renderArchitecture(element, trial.architecture, {
      healthMetrics: trial.health_metrics,
      compact: true,
      label: `3D view of trial ${trial.number}'s model: ${layers.length} layers. Use the left and right arrow keys to step through them.`,
    }),
  );
}

// Many WebGL contexts are costly: give them back when the page goes away.
window.addEventListener("pagehide", () => viewers.forEach((viewer) => viewer.dispose()));
