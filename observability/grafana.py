"""Grafana dashboard JSON from :data:`observability.panels.DASHBOARD`, built with Grafana's own SDK.

The JSON is committed under ``configs/monitoring/grafana/dashboards/`` (Grafana's file provisioning
reads it from there); ``esteira grafana`` rewrites it and ``--check`` fails when
the committed file differs from what the code generates.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from observability.panels import DASHBOARD, Dashboard, Panel, Variable

DASHBOARD_FILE = (Path(__file__).resolve().parent.parent
                  / "configs/monitoring/grafana/dashboards/esteira-model-server.json")
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
_WIDTH = 24


def _panel(panel: Panel, panel_id: int, width: int) -> dashboard.Panel:
    builders: dict[str, Any] = {"timeseries": timeseries.Panel, "histogram": bargauge.Panel,
                                "state": statetimeline.Panel}
    built = builders[panel.kind]().title(panel.title).description(panel.description).unit(panel.unit)
    built = built.id(panel_id).datasource(DATASOURCE).span(width).height(8)
    for index, query in enumerate(panel.queries):
        target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + index))
        if panel.kind == "histogram":
            target = target.format(PromQueryFormat.HEATMAP).instant()
        built = built.with_target(target)
    return built


def _variable(variable: Variable) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(variable.name)
        .label(variable.name)
        .query(variable.grafana_query)
        .datasource(DATASOURCE)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(variable.multi)
        .include_all(variable.multi)
    )


def build(spec: Dashboard = DASHBOARD) -> dict:
    """The dashboard as Grafana's JSON model (a plain dict, ready for json.dumps)."""
    board = (
        dashboard.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(["esteira", "tf-serving", "ml"])
        .time("now-1h", "now")
        .refresh("30s")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for variable in spec.variables:
        board = board.with_variable(_variable(variable))
    next_id = iter(range(1, 1000))
    for row in spec.rows:
        header = dashboard.Row(row.title).id(next(next_id))
        if row.repeat:
            header = header.repeat(row.repeat)
        board = board.with_row(header)
        width = _WIDTH // len(row.panels) if len(row.panels) <= 4 else _WIDTH // 4
        for panel in row.panels:
            board = board.with_panel(_panel(panel, next(next_id), width))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render(spec: Dashboard = DASHBOARD) -> str:
    return json.dumps(build(spec), indent=2, sort_keys=True) + "\n"
