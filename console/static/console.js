// Draws the console's charts with the vendored uPlot from the JSON the page embeds (no fetches).
(function () {
  "use strict";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  const source = document.getElementById("chart-data");
  const data = source ? JSON.parse(source.textContent) : {};
  let drawn = 0;

  function draw(element, title, xLabel, names, x, ys, options) {
    const series = [{label: xLabel}].concat(names.map(function (name, i) {
      return Object.assign({label: name, stroke: COLORS[i % COLORS.length], width: 2,
                            points: {show: true, size: 5}}, (options || {})[name] || {});
    }));
    const width = Math.max((element.clientWidth || 0) - 16, 320);
    new uPlot({title: title, width: width, height: 240, series: series,
               scales: {x: {time: false}}, axes: [{label: xLabel}, {}]}, [x].concat(ys), element);
    element.classList.add("drawn");
    drawn += 1;
  }

  function curves(element) {
    const byMetric = {};
    Object.keys(data.curves || {}).forEach(function (name) {
      const dot = name.indexOf(".");
      const metric = name.slice(dot + 1);
      (byMetric[metric] = byMetric[metric] || {})[name.slice(0, dot)] = data.curves[name];
    });
    Object.keys(byMetric).sort().forEach(function (metric) {
      const phases = Object.keys(byMetric[metric]).sort().reverse();  // train, validation
      const steps = Array.from(new Set([].concat.apply([], phases.map(function (p) {
        return byMetric[metric][p].map(function (point) { return point[0]; });
      })))).sort(function (a, b) { return a - b; });
      const ys = phases.map(function (phase) {
        const values = new Map(byMetric[metric][phase]);
        return steps.map(function (step) { return values.has(step) ? values.get(step) : null; });
      });
      const holder = document.createElement("div");
      holder.className = "chart-item";
      element.appendChild(holder);
      draw(holder, metric, "epoch", phases, steps, ys);
    });
  }

  function scores(element) {
    const versions = Object.keys(data.scores.series);
    const x = data.scores.series[versions[0]].x;
    draw(element, "Score distribution on " + data.scores.rows + " eval rows (share of rows per bin)", "score",
         versions.map(function (v) { return "version " + v; }), x,
         versions.map(function (v) { return data.scores.series[v].share; }));
  }

  function calibration(element) {
    const c = data.calibration;
    draw(element, "Calibration: observed positive rate per score bin", "mean predicted score",
         ["observed rate", "perfect calibration"], c.predicted, [c.observed, c.predicted],
         {"perfect calibration": {dash: [4, 4], points: {show: false}, stroke: "#888"}});
  }

  const drawers = {curves: curves, scores: scores, calibration: calibration};
  document.querySelectorAll(".chart[data-chart]").forEach(function (element) {
    const kind = element.dataset.chart;
    if (data[kind] && drawers[kind]) { drawers[kind](element); }
  });
  document.body.dataset.charts = String(drawn);
})();
