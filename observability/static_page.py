"""The dashboard as one static HTML page, for where no Grafana runs (CI artifacts, reviews, laptops).

Every panel of :data:`observability.panels.DASHBOARD` is queried from Prometheus' HTTP API
(``query_range`` for time series, an instant ``query`` for histograms) and drawn in the browser by
uPlot, whose minified file ships inside this package (``static/``), so the page opens offline.
"""
from __future__ import annotations

import html
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from errors import EsteiraError
from observability.panels import DASHBOARD, Dashboard, Panel, Row, Variable, expand

_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POINTS = 240
STATIC = Path(__file__).resolve().parent / "static"


class PrometheusError(EsteiraError, RuntimeError):
    """Prometheus could not be reached or refused a query."""


def parse_duration(text: str) -> int:
    """``30s``, ``15m``, ``1h``, ``2d`` to seconds."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"duration {text!r}: use a positive whole number with s, m, h or d, e.g. 15m or 1h")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@dataclass
class PanelData:
    """What one panel shows: aligned series for uPlot, or why it shows none."""

    panel: Panel
    x: list[float] = field(default_factory=list)
    series: list[tuple[str, list[float | None]]] = field(default_factory=list)
    bounds: list[float | None] = field(default_factory=list)  # histogram bucket upper bounds (None = +Inf)
    error: str = ""

    @property
    def has_data(self) -> bool:
        return any(value is not None for _name, values in self.series for value in values)

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.panel.title, "description": self.panel.description, "unit": self.panel.unit,
            "kind": self.panel.kind, "queries": [q.expr for q in self.panel.queries], "error": self.error,
            "x": self.x, "series": [{"name": name, "values": values} for name, values in self.series],
            "bounds": self.bounds,
        }


class PrometheusClient:
    def __init__(self, url: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self._http.get(self.url + path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url} ({exc}); check --prometheus") from exc
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"{self.url}{path} answered HTTP {response.status_code} without JSON; "
                                  "is --prometheus the Prometheus server's URL?") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', response.text)}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": expr, "time": at})["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})["result"]

    def label_values(self, label: str, selector: str, start: float, end: float) -> list[str]:
        return self._get(f"/api/v1/label/{label}/values", {"match[]": selector, "start": start, "end": end})


def _number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _legend(template: str, labels: dict[str, str]) -> str:
    name = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()
    return name or json.dumps(labels, sort_keys=True)


def _regex(values: list[str]) -> str:
    return "|".join(re.escape(v) for v in values) if values else ".+"


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    step: float

    @classmethod
    def ending(cls, end: float, seconds: int) -> Window:
        return cls(end - seconds, end, max(1.0, math.ceil(seconds / MAX_POINTS)))

    def macros(self) -> dict[str, str]:
        rate = max(4 * self.step, 15.0)
        return {"__rate_interval": f"{int(rate)}s", "__interval": f"{int(self.step)}s",
                "__range": f"{int(self.end - self.start)}s"}


def query_panel(client: PrometheusClient, panel: Panel, values: dict[str, str], window: Window) -> PanelData:
    data = PanelData(panel)
    try:
        if panel.kind == "histogram":
            _histogram(client, panel, values, window, data)
        else:
            _timeseries(client, panel, values, window, data)
    except PrometheusError as exc:
        data.error = str(exc)
    return data


def _timeseries(client: PrometheusClient, panel: Panel, values: dict[str, str], window: Window,
                data: PanelData) -> None:
    steps = int((window.end - window.start) // window.step) + 1
    data.x = [window.start + i * window.step for i in range(steps)]
    for query in panel.queries:
        for result in client.query_range(expand(query.expr, values), window.start, window.end, window.step):
            column: list[float | None] = [None] * steps
            for stamp, text in result["values"]:
                index = round((float(stamp) - window.start) / window.step)
                if 0 <= index < steps:
                    column[index] = _number(text)
            data.series.append((_legend(query.legend, result["metric"]), column))


def _histogram(client: PrometheusClient, panel: Panel, values: dict[str, str], window: Window, data: PanelData) -> None:
    """Cumulative ``le`` buckets at the window's end, as the share of each bucket (one query per panel)."""
    for query in panel.queries[:1]:
        buckets = sorted(
            ((float(r["metric"].get("le", "nan")), _number(r["value"][1]) or 0.0)
             for r in client.query(expand(query.expr, values), window.end)),
        )
        if not buckets:
            continue
        total = buckets[-1][1]
        shares: list[float | None] = []
        previous = 0.0
        for _bound, cumulative in buckets:
            shares.append((cumulative - previous) / total if total else None)
            previous = cumulative
        data.x = list(range(len(buckets)))
        data.series.append(("share of values", shares))
        data.bounds = [b if math.isfinite(b) else None for b, _c in buckets]


@dataclass
class RenderedRow:
    title: str
    panels: list[PanelData]


def _variable_values(client: PrometheusClient, variable: Variable, values: dict[str, str], window: Window) -> list[str]:
    selector = f"{variable.metric}{{{expand(variable.matchers, values)}}}" if variable.matchers else variable.metric
    return sorted(client.label_values(variable.label, selector, window.start, window.end))


def collect(client: PrometheusClient, window: Window, *, model: str | None = None, version: str | None = None,
            max_repeat: int = 4, spec: Dashboard = DASHBOARD) -> list[RenderedRow]:
    """Query every panel; a repeated row is drawn for its variable's first ``max_repeat`` values by PSI."""
    values = {**window.macros(), "model": _regex([model] if model else []),
              "version": _regex([version] if version else [])}
    rows: list[RenderedRow] = []
    for row in spec.rows:
        if row.repeat:
            rows.extend(_repeated(client, row, values, window, max_repeat, spec))
            continue
        rows.append(RenderedRow(row.title, [query_panel(client, p, values, window) for p in row.panels]))
    return rows


def _repeated(client: PrometheusClient, row: Row, values: dict[str, str], window: Window, max_repeat: int,
              spec: Dashboard) -> list[RenderedRow]:
    assert row.repeat is not None  # collect() sends only repeated rows here
    variable = next(v for v in spec.variables if v.name == row.repeat)
    try:
        names = _variable_values(client, variable, values, window)
        ranked = client.query(f"max by ({variable.label}) ({variable.metric}{{{expand(variable.matchers, values)}}})",
                              window.end)
    except PrometheusError as exc:
        failed = RenderedRow(row.title.replace(f"${row.repeat}", "(none)"),
                             [PanelData(p, error=str(exc)) for p in row.panels])
        return [failed]
    order = {r["metric"].get(variable.label, ""): _number(r["value"][1]) or 0.0 for r in ranked}
    names = sorted(names, key=lambda n: -order.get(n, 0.0))[:max_repeat]
    rows = []
    for name in names or [""]:
        scoped = {**values, row.repeat: re.escape(name) if name else ".+"}
        title = row.title.replace(f"${row.repeat}", name or "(none)")
        rows.append(RenderedRow(title, [query_panel(client, p, scoped, window) for p in row.panels]))
    return rows


def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def page(rows: list[RenderedRow], prometheus_url: str, window: Window, spec: Dashboard = DASHBOARD) -> str:
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(window.end))
    document = {"rows": [{"title": r.title, "panels": [p.as_json() for p in r.panels]} for r in rows]}
    return _TEMPLATE.format(
        title=html.escape(spec.title), css=_asset("uPlot.min.css"), uplot=_asset("uPlot.iife.min.js"),
        source=html.escape(prometheus_url), generated=generated,
        minutes=int((window.end - window.start) // 60), data=_script_json(document), app=_APP,
    )


def render(prometheus_url: str, out_dir: Path, *, range_seconds: int = 3600, end: float | None = None,
           model: str | None = None, version: str | None = None, max_repeat: int = 4) -> tuple[Path, list[RenderedRow]]:
    """Write ``out_dir/index.html``; returns its path and what each panel showed."""
    window = Window.ending(end if end is not None else time.time(), range_seconds)
    client = PrometheusClient(prometheus_url)
    try:
        client.query("vector(1)", window.end)  # fail early, with a clear error, when unreachable
        rows = collect(client, window, model=model, version=version, max_repeat=max_repeat)
    finally:
        client.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "index.html"
    target.write_text(page(rows, prometheus_url, window), encoding="utf-8")
    return target, rows


_APP = r"""
const units = {
  s: v => v < 1e-3 ? (v * 1e6).toFixed(0) + " µs" : v < 1 ? (v * 1e3).toFixed(1) + " ms" : v.toFixed(2) + " s",
  percentunit: v => (Math.abs(v) >= 0.01 || v === 0 ? (v * 100).toFixed(1) : +(v * 100).toPrecision(2)) + "%",
  bytes: v => v >= 2 ** 30 ? (v / 2 ** 30).toFixed(2) + " GiB" : (v / 2 ** 20).toFixed(1) + " MiB",
  reqps: v => v.toFixed(2) + "/s",
  short: v => Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + "k" : +v.toFixed(3) + "",
};
const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                 "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const fmt = unit => (u, ticks) => ticks.map(t => t == null ? "" : (units[unit] || units.short)(t));

function timeseries(el, p) {
  const series = [{}].concat(p.series.map((s, i) => ({
    label: s.name, stroke: palette[i % palette.length], width: 1.5, spanGaps: false,
    value: (u, v) => v == null ? "-" : (units[p.unit] || units.short)(v),
  })));
  // a flat series (all zero) gets a visible range instead of uPlot's huge default
  const flat = (u, min, max) => min === max
    ? [Math.min(0, min), Math.max(0, max) || (p.unit === "percentunit" ? 0.01 : 1)] : [min, max];
  const opts = {width: el.clientWidth, height: 220, series, scales: {y: {range: flat}},
    axes: [{}, {values: fmt(p.unit), size: 70}], legend: {live: false}};
  return new uPlot(opts, [p.x].concat(p.series.map(s => s.values)), el);
}

function histogram(el, p) {
  const shares = p.series[0].values, bounds = p.bounds;
  const labels = bounds.map(b => b == null ? "+Inf" : "< " + (+b.toPrecision(3)));
  const opts = {width: el.clientWidth, height: 220, scales: {x: {time: false}},
    series: [{}, {label: "share of values", fill: "#1f77b488", stroke: "#1f77b4",
                  paths: uPlot.paths.bars({size: [0.8]}), points: {show: false}}],
    axes: [{values: (u, ticks) => ticks.map(t => labels[t] ?? "")}, {values: fmt("percentunit"), size: 60}],
    legend: {live: false}};
  return new uPlot(opts, [p.x, shares], el);
}

let drawn = 0;
const root = document.getElementById("rows");
for (const row of DATA.rows) {
  const section = document.createElement("section");
  section.innerHTML = "<h2></h2><div class='grid'></div>";
  section.querySelector("h2").textContent = row.title;
  root.appendChild(section);
  for (const p of row.panels) {
    const card = document.createElement("div");
    card.className = "panel";
    card.innerHTML = "<h3></h3><p class='desc'></p><div class='chart'></div>";
    card.querySelector("h3").textContent = p.title;
    card.querySelector(".desc").textContent = p.description;
    section.querySelector(".grid").appendChild(card);
    const chart = card.querySelector(".chart");
    const hasData = p.series.some(s => s.values.some(v => v != null));
    if (p.error || !hasData) {
      card.classList.add(p.error ? "failed" : "empty");
      chart.textContent = p.error ? "Query failed: " + p.error : "No data for: " + p.queries.join("  |  ");
      continue;
    }
    (p.kind === "histogram" ? histogram : timeseries)(chart, p);
    card.classList.add("drawn");
    drawn += 1;
  }
}
document.body.dataset.charts = String(drawn);
"""

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{css}</style>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }}
header p {{ color: #555; margin: 4px 0 16px; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; }}
.panel {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; }}
.panel h3 {{ margin: 4px 0; font-size: 15px; }} .desc {{ color: #666; margin: 0 0 6px; font-size: 12px; }}
.empty .chart, .failed .chart {{ color: #a33; font: 12px monospace; padding: 12px 0; word-break: break-all; }}
</style></head>
<body data-charts="0">
<header><h1>{title}</h1><p>Prometheus {source}, last {minutes} minutes up to {generated}.</p></header>
<div id="rows"></div>
<script>{uplot}</script>
<script>const DATA = {data};</script>
<script>{app}</script>
</body></html>
"""
