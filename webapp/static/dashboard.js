// Draws the dashboard from /dashboard/data with Plotly (served by the app itself). A chart
// with nothing to draw says so in words instead of showing empty axes.
"use strict";

const CONFIG = { displayModeBar: false, responsive: true };
const MAX_REGIONS = 12;         // map panels; quieter regions are counted in a note
const TOP_BAR_PX = 24;          // height of one top-ads bar and its label

function layout(xaxis = {}, yaxis = {}, more = {}) {
  return {
    margin: { l: 8, r: 8, t: 8, b: 8 }, font: { size: 12 },
    legend: { orientation: "h", x: 0, y: 1.02, xanchor: "left", yanchor: "bottom" },
    xaxis: { automargin: true, ...xaxis }, yaxis: { automargin: true, ...yaxis }, ...more,
  };
}

function empty(id, message) {
  const el = document.getElementById(id);
  Plotly.purge(el);
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = message;
  el.replaceChildren(p);
  el.classList.add("is-empty");
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function percentLines(ctr, field) {
  return Object.entries(ctr).map(([name, s]) => ({
    x: s.days, y: s[field], name: name, type: "scatter", mode: "lines+markers",
    connectgaps: false, line: { width: name === "all" ? 3 : 1.5 },
  }));
}

function drawRates(ctr) {
  if (!ctr.all.impressions.some((n) => n > 0)) {
    const none = `No impressions in the last ${ctr.all.days.length} days yet.`;
    empty("apply-rate", none);
    empty("view-rate", none);
    return;
  }
  // all zero (no apply yet): a scale of a few percent, not Plotly's 0 to 100 %
  const y = (field) => ({ tickformat: ".1%", rangemode: "tozero",
                          ...(Object.values(ctr).some((s) => s[field].some((v) => v > 0))
                            ? {} : { range: [0, 0.05] }) });
  return Promise.all([
    Plotly.newPlot("apply-rate", percentLines(ctr, "apply_rate"), layout({}, y("apply_rate")), CONFIG),
    Plotly.newPlot("view-rate", percentLines(ctr, "view_rate"), layout({}, y("view_rate")), CONFIG)]);
}

function drawProbabilities(history) {
  if (!history.ts.length) {
    empty("probabilities", "No regeneration has run yet: the probabilities appear with the first.");
    return;
  }
  const x = history.ts.map((t) => new Date(t * 1000));
  const traces = Object.entries(history.strategies).map(([name, p]) => ({
    x: x, y: p, name: name, type: "scatter", mode: "lines", stackgroup: "p",
  }));
  return Plotly.newPlot("probabilities", traces, layout({}, { tickformat: ".0%", range: [0, 1] }), CONFIG);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return seconds < 120 ? `${seconds.toFixed(1)} s ago` : `${(seconds / 60).toFixed(1)} min ago`;
}

function number(x) {   // at most three significant digits, no exponent
  return x >= 100 ? x.toFixed(0) : String(Number(x.toPrecision(3)));
}

function drawPipeline(p) {
  const rows = [
    ["pipeline lag (oldest event not rolled up)", `${p.lag_s.toFixed(1)} s`],
    ["waiting: batches in the inbox / pending", `${p.inbox_batches} / ${p.pending_batches}`],
    ["last rollup finished", `${age(p.rollup.age_s)}, ${plural(p.rollup.processed, "event")} counted`],
    ["last regeneration finished", `${age(p.regenerate.age_s)}, ${plural(p.regenerate.processed, "feed")} written`],
    ["active cells / live ads", `${p.active_cells} / ${p.live_ads}`],
  ];
  document.getElementById("pipeline").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"); a.textContent = k;
    const b = document.createElement("td"); b.textContent = v; b.className = "value";
    tr.append(a, b);
    return tr;
  }));
  const jobs = [["rollup", p.rollup], ["regeneration", p.regenerate]]
    .filter(([, job]) => job.duration_s !== null && job.duration_s !== undefined);
  if (!jobs.length) {
    empty("jobs", "No rollup or regeneration has run yet.");
    return;
  }
  // one unit for the axis and the bars' text: ms while every run is under a second
  const longest = Math.max(...jobs.map(([, job]) => job.duration_s));
  const [unit, scale] = longest < 1 ? ["ms", 1000] : ["s", 1];
  const x = jobs.map(([, job]) => job.duration_s * scale);
  return Plotly.newPlot("jobs", [{
    type: "bar", orientation: "h", x: x, y: jobs.map(([name]) => name),
    text: x.map((v) => `${number(v)} ${unit}`), textposition: "auto", cliponaxis: false,
    hovertemplate: `%{y}: %{x:.3g} ${unit}<extra></extra>`,
  }], layout({ title: { text: `duration of the last run (${unit})` }, rangemode: "tozero",
               range: [0, Math.max(...x) * 1.3 || 1] },
             { type: "category", autorange: "reversed" }), CONFIG);
}

function colour(share) {   // pale to deep blue, as the scale in the note
  const c = (lo, hi) => Math.round(lo + (hi - lo) * share);
  return `rgba(${c(222, 8)}, ${c(235, 48)}, ${c(247, 107)}, 0.85)`;
}

function degrees(value, positive, negative) {
  return `${Math.abs(value).toFixed(2)}° ${value >= 0 ? positive : negative}`;
}

function bounds(cells) {
  const b = {
    lat_min: Math.min(...cells.map((c) => c.lat_min)), lat_max: Math.max(...cells.map((c) => c.lat_max)),
    lon_min: Math.min(...cells.map((c) => c.lon_min)), lon_max: Math.max(...cells.map((c) => c.lon_max)),
  };
  // a margin of a tenth of the span, and at least one cell, on every side
  const padLat = Math.max(0.1 * (b.lat_max - b.lat_min), cells[0].lat_max - cells[0].lat_min);
  const padLon = Math.max(0.1 * (b.lon_max - b.lon_min), cells[0].lon_max - cells[0].lon_min);
  return { lat: [b.lat_min - padLat, b.lat_max + padLat], lon: [b.lon_min - padLon, b.lon_max + padLon] };
}

function drawRegion(el, cells, most) {
  const box = bounds(cells);
  const shapes = cells.map((c) => ({
    type: "rect", x0: c.lon_min, x1: c.lon_max, y0: c.lat_min, y1: c.lat_max,
    line: { width: 0.5, color: "#52606d" }, fillcolor: colour(c.feeds / most), layer: "below",
  }));
  const centres = {
    type: "scatter", mode: "markers",
    x: cells.map((c) => (c.lon_min + c.lon_max) / 2), y: cells.map((c) => (c.lat_min + c.lat_max) / 2),
    text: cells.map((c) => `${c.cell}: ${c.feeds.toFixed(1)} feeds`), hoverinfo: "text",
    marker: { size: 6, color: "#1f2933", opacity: 0.6 },
  };
  // a degree of longitude is cos(latitude) of a degree of latitude; Plotly widens one range
  // to keep that ratio, around the cells
  const lat = (box.lat[0] + box.lat[1]) / 2;
  return Plotly.newPlot(el, [centres], layout(
    { range: box.lon, ticksuffix: "°", nticks: 4, showgrid: false },
    { range: box.lat, ticksuffix: "°", nticks: 5, showgrid: false, scaleanchor: "x",
      scaleratio: 1 / Math.cos(lat * Math.PI / 180) },
    { shapes: shapes, showlegend: false }), CONFIG);
}

function drawMap(cells) {
  const note = document.getElementById("map-note");
  if (!cells.length) {
    note.textContent = "";
    empty("map", "No cell has asked for a feed recently (ACTIVE_CELL_TTL_S).");
    return;
  }
  const regions = [];
  for (const c of cells) (regions[c.region] = regions[c.region] || []).push(c);
  const shown = regions.filter(Boolean).slice(0, MAX_REGIONS);
  const most = Math.max(1e-9, ...cells.map((c) => c.feeds));
  const hidden = regions.filter(Boolean).length - shown.length;
  note.replaceChildren("feeds served per cell: 0", Object.assign(document.createElement("span"),
    { className: "scale" }), `${number(most)}` +
    (hidden > 0 ? `; ${plural(hidden, "quieter region")} not drawn` : ""));
  document.getElementById("map").replaceChildren(...shown.map((group, i) => {
    const region = document.createElement("div");
    region.className = "region";
    const title = document.createElement("h3");
    const feeds = group.reduce((n, c) => n + c.feeds, 0);
    const lat = group.reduce((s, c) => s + c.lat_min + c.lat_max, 0) / (2 * group.length);
    const lon = group.reduce((s, c) => s + c.lon_min + c.lon_max, 0) / (2 * group.length);
    title.textContent = `${degrees(lat, "N", "S")}, ${degrees(lon, "E", "W")}: ` +
      `${plural(group.length, "cell")}, ${number(feeds)} feeds`;
    const plot = document.createElement("div");
    plot.className = shown.length > 3 ? "region-plot" : "region-plot tall";
    plot.id = `map-${i}`;
    region.append(title, plot);
    return region;
  }));
  return Promise.all(shown.map((group, i) =>
    drawRegion(document.getElementById(`map-${i}`), group, most)));
}

function shortened(text, chars) {
  return text.length > chars ? `${text.slice(0, chars - 1).trimEnd()}…` : text;
}

function drawTopAds(ads) {
  const note = document.getElementById("top-ads-note");
  if (!ads.length) {
    note.textContent = "";
    empty("top-ads", "No ad has been shown yet: ads appear here once their impressions are rolled up.");
    return;
  }
  const applies = ads.reduce((n, a) => n + a.applies, 0);
  note.textContent = applies === 0
    ? `No applies yet: ${plural(ads.length, "ad")} shown, ordered by their priors and views alone.`
    : (ads.length < 20 ? `Only ${plural(ads.length, "ad")} shown so far.` : "");
  const el = document.getElementById("top-ads");
  const chars = el.clientWidth < 480 ? 18 : 30;
  const rows = ads.slice().reverse();
  el.style.height = `${rows.length * TOP_BAR_PX + 60}px`;
  const x = rows.map((a) => a.posterior_mean);
  return Plotly.newPlot(el, [{
    type: "bar", orientation: "h", x: x, y: rows.map((a) => a.ad_id),
    text: rows.map((a) => `${a.applies} ${a.applies === 1 ? "apply" : "applies"}`),
    textposition: "auto", cliponaxis: false,
    customdata: rows.map((a) => [a.title || a.ad_id, a.company || "", a.impressions, a.views]),
    hovertemplate: "%{customdata[0]}, %{customdata[1]} (%{y}): %{x:.2%}<br>" +
      "%{customdata[2]} impressions, %{customdata[3]} views, %{text}<extra></extra>",
  }], layout(
    { tickformat: ".1%", range: [0, Math.max(...x) * 1.3], title: { text: "posterior mean of P(apply)" } },
    { type: "category", tickmode: "array", tickvals: rows.map((a) => a.ad_id),
      ticktext: rows.map((a) => shortened(a.title || a.ad_id, chars)) }), CONFIG);
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
  return Plotly.newPlot("position-bias", traces, layout(
    { title: { text: "position" }, type: "category" },
    { title: { text: "examined, relative to position 1" }, rangemode: "tozero" }), CONFIG);
}

async function load() {
  const response = await fetch(document.body.dataset.source, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`dashboard data: HTTP ${response.status}`);
  const data = await response.json();
  await Promise.all([drawRates(data.ctr), drawProbabilities(data.probabilities),
                     drawPipeline(data.pipeline), drawMap(data.cells), drawTopAds(data.top_ads),
                     drawPositionBias(data.position_bias)]);
  document.getElementById("updated").textContent =
    `as of ${new Date(data.generated_at * 1000).toISOString()}`;
  document.body.dataset.ready = "true";
}

load().catch((error) => {
  document.getElementById("updated").textContent = String(error);
  console.error(error);
});
