// Draws the dashboard from /dashboard/data with Plotly (served by the app itself).
"use strict";

const CONFIG = { displayModeBar: false, responsive: true };
const BLUES = [[0, "rgb(222, 235, 247)"], [1, "rgb(8, 48, 107)"]];
const LAYOUT = { margin: { l: 50, r: 20, t: 10, b: 40 }, legend: { orientation: "h" } };

function percentLines(ctr, field) {
  return Object.entries(ctr).map(([name, s]) => ({
    x: s.days, y: s[field], name: name, type: "scatter", mode: "lines+markers",
    connectgaps: false, line: { width: name === "all" ? 3 : 1.5 },
  }));
}

function drawRates(data) {
  const axis = { yaxis: { tickformat: ".1%", rangemode: "tozero" } };
  Plotly.newPlot("apply-rate", percentLines(data.ctr, "apply_rate"), { ...LAYOUT, ...axis }, CONFIG);
  Plotly.newPlot("view-rate", percentLines(data.ctr, "view_rate"), { ...LAYOUT, ...axis }, CONFIG);
}

function drawProbabilities(history) {
  const x = history.ts.map((t) => new Date(t * 1000));
  const traces = Object.entries(history.strategies).map(([name, p]) => ({
    x: x, y: p, name: name, type: "scatter", mode: "lines", stackgroup: "p",
  }));
  Plotly.newPlot("probabilities", traces,
    { ...LAYOUT, yaxis: { tickformat: ".0%", range: [0, 1] } }, CONFIG);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return seconds < 120 ? `${seconds.toFixed(1)} s ago` : `${(seconds / 60).toFixed(1)} min ago`;
}

function drawPipeline(p) {
  const rows = [
    ["pipeline lag (oldest event not rolled up)", `${p.lag_s.toFixed(1)} s`],
    ["waiting: inbox batches / pending events", `${p.inbox_batches} / ${p.pending_events}`],
    ["last rollup", `${age(p.rollup.age_s)}, took ${(p.rollup.duration_s || 0).toFixed(3)} s, ${p.rollup.processed} events`],
    ["last regeneration", `${age(p.regenerate.age_s)}, took ${(p.regenerate.duration_s || 0).toFixed(3)} s, ${p.regenerate.processed} cells`],
    ["active cells / live ads", `${p.active_cells} / ${p.live_ads}`],
  ];
  const table = document.getElementById("pipeline");
  table.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"); a.textContent = k;
    const b = document.createElement("td"); b.textContent = v; b.className = "value";
    tr.append(a, b);
    return tr;
  }));
  Plotly.newPlot("jobs", [{
    type: "bar", orientation: "h", x: [p.rollup.duration_s || 0, p.regenerate.duration_s || 0],
    y: ["rollup", "regeneration"], text: [age(p.rollup.age_s), age(p.regenerate.age_s)],
    hovertemplate: "%{y}: %{x:.3f} s (%{text})<extra></extra>",
  }], { ...LAYOUT, xaxis: { title: "last duration (s)" } }, CONFIG);
}

function colour(share) {   // white to deep blue
  const c = (lo, hi) => Math.round(lo + (hi - lo) * share);
  return `rgba(${c(222, 8)}, ${c(235, 48)}, ${c(247, 107)}, 0.85)`;
}

function drawMap(cells) {
  const most = Math.max(1e-9, ...cells.map((c) => c.feeds));
  const shapes = cells.map((c) => ({
    type: "rect", x0: c.lon_min, x1: c.lon_max, y0: c.lat_min, y1: c.lat_max,
    line: { width: 0.5, color: "#52606d" }, fillcolor: colour(c.feeds / most), layer: "below",
  }));
  const centres = {
    type: "scatter", mode: "markers",
    x: cells.map((c) => (c.lon_min + c.lon_max) / 2), y: cells.map((c) => (c.lat_min + c.lat_max) / 2),
    text: cells.map((c) => `${c.cell}: ${c.feeds.toFixed(1)} feeds`), hoverinfo: "text",
    marker: { size: 4, color: cells.map((c) => c.feeds), colorscale: BLUES, cmin: 0, cmax: most,
              showscale: true, colorbar: { title: "feeds" } },
  };
  // a degree of longitude is cos(latitude) of a degree of latitude
  const lat = cells.reduce((s, c) => s + (c.lat_min + c.lat_max) / 2, 0) / Math.max(1, cells.length);
  Plotly.newPlot("map", [centres], {
    ...LAYOUT, shapes: shapes, xaxis: { title: "longitude" },
    yaxis: { title: "latitude", scaleanchor: "x", scaleratio: 1 / Math.cos(lat * Math.PI / 180) },
  }, CONFIG);
}

function drawTopAds(ads) {
  const rows = ads.slice().reverse();
  Plotly.newPlot("top-ads", [{
    type: "bar", orientation: "h", x: rows.map((a) => a.posterior_mean), y: rows.map((a) => a.ad_id),
    text: rows.map((a) => `${a.impressions} impressions, ${a.views} views, ${a.applies} applies`),
    textposition: "none", hovertemplate: "%{y}: %{x:.2%}<br>%{text}<extra></extra>",
  }], { ...LAYOUT, margin: { ...LAYOUT.margin, l: 110 }, xaxis: { tickformat: ".1%" },
        yaxis: { type: "category", automargin: true } }, CONFIG);
}

function drawPositionBias(bias) {
  const traces = [{
    x: bias.bins, y: bias.weights, name: `in use (${bias.source})`, type: "scatter",
    mode: "lines+markers", line: { width: 3 },
  }];
  if (bias.learnt) {
    const l = bias.learnt;
    traces.push({ x: l.bins, y: l.high, type: "scatter", mode: "lines", line: { width: 0 },
                  showlegend: false, hoverinfo: "skip" });
    traces.push({ x: l.bins, y: l.low, type: "scatter", mode: "lines", line: { width: 0 },
                  fill: "tonexty", fillcolor: "rgba(31, 119, 180, 0.2)", name: "95 % interval",
                  hoverinfo: "skip" });
    traces.push({ x: l.bins, y: l.curve, name: "learnt", type: "scatter", mode: "lines",
                  line: { dash: "dot" } });
  }
  Plotly.newPlot("position-bias", traces, {
    ...LAYOUT, xaxis: { title: "position", type: "category" },
    yaxis: { title: "examined, relative to position 1", rangemode: "tozero" },
  }, CONFIG);
}

async function load() {
  const response = await fetch(document.body.dataset.source, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`dashboard data: HTTP ${response.status}`);
  const data = await response.json();
  drawRates(data);
  drawProbabilities(data.probabilities);
  drawPipeline(data.pipeline);
  drawMap(data.cells);
  drawTopAds(data.top_ads);
  drawPositionBias(data.position_bias);
  document.getElementById("updated").textContent =
    `as of ${new Date(data.generated_at * 1000).toISOString()}`;
  document.body.dataset.ready = "true";
}

load().catch((error) => {
  document.getElementById("updated").textContent = String(error);
  console.error(error);
});
