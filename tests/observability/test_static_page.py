"""The static dashboard page: queries, histogram shares, errors, and the page it writes."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from cli.dashboard import dashboard_main
from observability.panels import DASHBOARD, Panel, Query, expand
from observability.static_page import PrometheusClient, Window, collect, page, parse_duration, query_panel


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("30s", "15m", "1h", "2d")] == [30, 900, 3600, 172800]
    for bad in ("1 hour", "0m", "-5m", "1.5h", ""):
        with pytest.raises(ValueError, match="whole number"):
            parse_duration(bad)


def test_expand_names_a_missing_variable() -> None:
    expanded = expand('x{model=~"$model"}[$__rate_interval]', {"model": "a", "__rate_interval": "1m"})
    assert expanded == 'x{model=~"a"}[1m]'
    with pytest.raises(KeyError, match=r"\$version"):
        expand('x{version="$version"}', {})


def test_window_macros_follow_the_step() -> None:
    window = Window.ending(10_000.0, 3600)
    assert window.step == 15 and window.macros() == {"__rate_interval": "60s", "__interval": "15s", "__range": "3600s"}
    assert Window.ending(10_000.0, 120).macros()["__rate_interval"] == "15s"


def _prometheus(handler):  # type: ignore[no-untyped-def]
    def respond(request: httpx.Request) -> httpx.Response:
        params = {k: v[0] for k, v in parse_qs(urlparse(str(request.url)).query).items()}
        return httpx.Response(200, json=handler(request.url.path, params))
    return PrometheusClient("http://prometheus.test", transport=httpx.MockTransport(respond))


def test_histogram_panel_turns_cumulative_buckets_into_shares() -> None:
    buckets = [("0.5", "30"), ("+Inf", "40"), ("-0.5", "10")]
    client = _prometheus(lambda path, params: {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"le": le}, "value": [1, count]} for le, count in buckets]}})
    panel = Panel("h", "", "short", (Query("sum by (le) (x_bucket)"),), kind="histogram")
    data = query_panel(client, panel, {}, Window.ending(1000.0, 60))
    assert data.series == [("share of values", [0.25, 0.5, 0.25])]
    assert data.bounds == [-0.5, 0.5, None]


def test_timeseries_aligns_points_and_drops_nan() -> None:
    def handler(path: str, params: dict) -> dict:
        assert path == "/api/v1/query_range" and params["step"] == "1.0"
        return {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"version": "2"}, "values": [[1000 - 60, "1"], [1000 - 58, "NaN"], [1000, "3"]]}]}}
    panel = Panel("t", "", "short", (Query("up", "v{{version}}"),))
    data = query_panel(_prometheus(handler), panel, {}, Window.ending(1000.0, 60))
    name, values = data.series[0]
    assert name == "v2" and len(values) == len(data.x) == 61
    assert values[0] == 1.0 and values[2] is None and values[-1] == 3.0 and values[1] is None


def test_a_refused_query_is_shown_on_its_panel_not_raised() -> None:
    client = _prometheus(lambda path, params: {"status": "error", "errorType": "bad_data", "error": "parse error"})
    data = query_panel(client, Panel("t", "", "short", (Query("sum("),)), {}, Window.ending(1000.0, 60))
    assert data.error == "bad_data: parse error" and not data.has_data


def test_page_embeds_data_safely_and_ships_uplot() -> None:
    def handler(path: str, params: dict) -> dict:
        if "/label/" in path:
            return {"status": "success", "data": ["feature_0"]}
        if path == "/api/v1/query":
            return {"status": "success", "data": {"resultType": "vector", "result": []}}
        return {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"model": "</script><b>"}, "values": [[1000, "1"]]}]}}
    window = Window.ending(1000.0, 60)
    rows = collect(_prometheus(handler), window)
    assert [r.title for r in rows][3] == "Input feature feature_0: served against training"
    html = page(rows, "http://prometheus.test", window)
    assert "</script><b>" not in html and "<\\/script><b>" in html
    assert "uPlot" in html and "<script src=" not in html and "<link " not in html
    data = json.loads(html.split("const DATA = ", 1)[1].split(";</script>", 1)[0].replace("<\\/", "</"))
    assert len([p for r in data["rows"] for p in r["panels"]]) == len(DASHBOARD.panels())


def test_cli_names_an_unreachable_prometheus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from observability.stack import free_port

    assert dashboard_main(["--prometheus", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path)]) == 1
    assert "cannot reach Prometheus" in capsys.readouterr().err
    assert not (tmp_path / "index.html").exists()


def test_cli_takes_prometheus_from_a_running_stack_or_says_to_start_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make dashboard` passes --stack outputs/stack: the stack's Prometheus, on whatever port it took."""
    from observability.stack import StackConfig, free_port, write_state

    state = tmp_path / "stack"
    assert dashboard_main(["--stack", str(state), "--out", str(tmp_path / "out")]) == 1
    assert "start it with `make stack`" in capsys.readouterr().err
    (state / "pids").mkdir(parents=True)
    (state / "pids" / "prometheus.pid").write_text("{}")  # what `up` leaves while the stack runs
    port = free_port()
    write_state(StackConfig(state, prometheus_port=port), mlflow_url=None)
    assert dashboard_main(["--stack", str(state), "--out", str(tmp_path / "out")]) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "out" / "index.html").exists()


def test_cli_rejects_a_bad_range(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        dashboard_main(["--prometheus", "http://x", "--out", str(tmp_path), "--range", "an hour"])


def test_esteira_dispatches_the_dashboard_subcommand() -> None:
    from cli.main import COMMANDS, _load

    assert _load(COMMANDS["dashboard"][0]) is dashboard_main
