"""The committed Grafana dashboard is what the generator writes, and it loads as Grafana's typed model."""
from __future__ import annotations

import json

import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard as GrafanaDashboard

from cli.dashboard import grafana_main as main
from observability.grafana import DASHBOARD_FILE, build, render
from observability.panels import DASHBOARD
from observability.stack import MONITORING


def test_committed_json_equals_generator_output() -> None:
    assert DASHBOARD_FILE.read_text() == render(), "run `esteira grafana` and commit the JSON"
    assert main(["--check"]) == 0


def test_check_reports_a_stale_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "board.json"
    stale.write_text(render().replace("Request rate", "Requests"))
    assert main(["--check", "--out", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_dashboard_loads_as_grafana_model_with_every_panel() -> None:
    document = json.loads(DASHBOARD_FILE.read_text())
    GrafanaDashboard.from_json(document)
    panels = [p for p in document["panels"] if p["type"] != "row"]
    assert [p["title"] for p in panels] == [p.title for p in DASHBOARD.panels()]
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert exprs == [q.expr for p in DASHBOARD.panels() for q in p.queries]
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in panels)
    names = {v["name"] for v in document["templating"]["list"]}
    assert {"datasource", "model", "version", "feature"} <= names
    repeated = [p for p in document["panels"] if p.get("repeat")]
    assert [p["repeat"] for p in repeated] == ["feature"]


def test_build_is_deterministic() -> None:
    assert build() == build()


def test_provisioning_points_at_the_dashboards() -> None:
    provisioning = MONITORING / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [s["type"] for s in sources] == ["prometheus"]
    providers = yaml.safe_load((provisioning / "dashboards" / "esteira.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]
