"""The monitoring loop on the real thing: `esteira serve`, Prometheus and Alertmanager on 127.0.0.1.

One stack per module (about 40 s to start: two demo-model exports, the server's TensorFlow import,
Prometheus' first scrape). Bounded load with drifted inputs and feedback with wrong labels for one
class, then: every panel query returns data, the drift alert and the per-class error alert reach
Alertmanager, the latency alert stays quiet, and the static dashboard page draws its charts in
headless Chromium.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from cli.dashboard import dashboard_main
from observability.panels import DASHBOARD
from observability.stack import MONITORING, StackConfig, free_port, start_stack, stop_processes, wait_until
from observability.static_page import PrometheusClient, Window, query_panel
from tests.browser import headless_chromium

# Panels whose metrics the server does not export yet (none today). Their PromQL is proven by the
# promtool unit tests (configs/monitoring/tests/alerts_test.yml) and their contracts are in
# configs/monitoring/README.md; a listed panel that returns data fails the test, so the list stays true.
NOT_YET_EXPORTED: frozenset[str] = frozenset()

# The committed `for:` durations (5 to 15 minutes) do not fit a test of under two minutes; the test
# copy of the alert rules differs only in `for:` (thresholds unchanged), derived from the committed file.
TEST_FOR = "3s"
DRIFTED = ("feature_0", "feature_1")
FEATURES = tuple(f"feature_{i}" for i in range(30))
LOAD_SECONDS = 12.0
def _require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install prometheus prometheus-alertmanager "
                    "chromium chromium-driver (.ci/run installs them)")


def _test_rules(target: Path) -> Path:
    document = yaml.safe_load((MONITORING / "rules" / "alerts.yml").read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["for"] = TEST_FOR
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def _send_feedback(client: httpx.Client, rest_url: str, response: httpx.Response, flip: list[bool]) -> int:
    """Late labels that make true class 1 look mispredicted and keep true class 0 right: rows predicted
    0 are labelled alternately 1 (wrong) and 0 (right); rows predicted 1 get no label."""
    items = []
    for row, (score,) in enumerate(response.json()["predictions"]):
        if score < 0.5:
            flip[0] = not flip[0]
            items.append({"request_id": response.headers["x-request-id"], "row": row, "label": int(flip[0])})
    if not items:
        return 200
    return client.post(f"{rest_url}/v1/models/demo/feedback", json={"feedback": items}).status_code


def _send_load(rest_url: str, seconds: float) -> dict[int, int]:
    """About 20 requests/s of 8 rows for `seconds`: half with DRIFTED features shifted by 3 standard
    deviations, one in ten malformed (400); answered requests get feedback (see _send_feedback)."""
    rng = np.random.default_rng(7)
    codes: dict[int, int] = {}
    flip = [False]
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as client:
        index = 0
        while time.monotonic() < deadline:
            index += 1
            if index % 10 == 0:
                body: dict = {"instances": "not a list"}
            else:
                shift = 3.0 if index % 2 else 0.0
                body = {"signature_name": "predict_raw", "instances": [
                    {f: float(rng.normal() + (shift if f in DRIFTED else 0.0)) for f in FEATURES} for _ in range(8)]}
            response = client.post(f"{rest_url}/v1/models/demo:predict", json=body)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            if response.status_code == 200:
                feedback = _send_feedback(client, rest_url, response, flip)
                codes[feedback] = codes.get(feedback, 0) + 1
            time.sleep(0.05)
    return codes


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    _require("prometheus", "prometheus-alertmanager", "promtool")
    state = tmp_path_factory.mktemp("stack")
    rules = (MONITORING / "rules" / "recording.yml", _test_rules(state / "rules" / "alerts.yml"))
    config = StackConfig(state, rest_port=free_port(), grpc_port=free_port(), prometheus_port=free_port(),
                         alertmanager_port=free_port(), scrape_interval="1s", rule_files=rules)
    try:
        start_stack(config)
        codes = _send_load(config.rest_url, LOAD_SECONDS)
        assert codes.get(200, 0) > 50 and codes.get(400, 0) > 0, codes
        yield config
    finally:
        stop_processes(state)


def _alerts(prometheus_url: str) -> list[dict]:
    return httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]


def _alertmanager_alerts(alertmanager_url: str) -> list[dict]:
    return httpx.get(f"{alertmanager_url}/api/v2/alerts", timeout=5).json()


def test_every_panel_query_returns_data(stack: StackConfig) -> None:
    client = PrometheusClient(stack.prometheus_url)
    window = Window.ending(time.time(), 120)
    values = {**window.macros(), "model": "demo", "version": ".+", "feature": DRIFTED[0]}
    try:
        results = {panel.title: query_panel(client, panel, values, window) for panel in DASHBOARD.panels()}
    finally:
        client.close()
    assert not {t: r.error for t, r in results.items() if r.error}, "a panel query failed"
    missing = sorted(t for t, r in results.items() if not r.has_data and t not in NOT_YET_EXPORTED)
    assert not missing, f"panels without data: {missing}"
    unexpectedly_exported = sorted(t for t in NOT_YET_EXPORTED if results[t].has_data)
    assert not unexpectedly_exported, f"now exported, remove from NOT_YET_EXPORTED: {unexpectedly_exported}"


def test_rules_load_and_evaluate_cleanly(stack: StackConfig) -> None:
    groups = httpx.get(f"{stack.prometheus_url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    committed = sum(len(g["rules"]) for f in ("recording.yml", "alerts.yml")
                    for g in yaml.safe_load((MONITORING / "rules" / f).read_text())["groups"])
    assert len(rules) == committed
    assert not [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]


def test_drift_alert_reaches_alertmanager(stack: StackConfig) -> None:
    def drift_alerts() -> set[str]:
        return {a["labels"]["feature"] for a in _alertmanager_alerts(stack.alertmanager_url)
                if a["labels"]["alertname"] == "EsteiraInputDrift"}

    wait_until(lambda: drift_alerts() >= set(DRIFTED), 60, "EsteiraInputDrift in Alertmanager")
    undrifted = drift_alerts() - set(DRIFTED)
    assert not undrifted, f"drift alert for features served as in training: {undrifted}"


def test_class_error_alert_reaches_alertmanager(stack: StackConfig) -> None:
    def class_alerts() -> set[str]:
        return {a["labels"]["true_class"] for a in _alertmanager_alerts(stack.alertmanager_url)
                if a["labels"]["alertname"] == "EsteiraClassErrorRateHigh"}

    wait_until(lambda: "1" in class_alerts(), 60, "EsteiraClassErrorRateHigh for true class 1 in Alertmanager")
    assert class_alerts() == {"1"}, "class 0 was labelled as predicted and must stay quiet"


def test_latency_alert_stays_quiet(stack: StackConfig) -> None:
    # The drift alert firing proves the rules have been evaluated over the load with the short `for:`.
    wait_until(lambda: any(a["labels"]["alertname"] == "EsteiraInputDrift" for a in _alerts(stack.prometheus_url)),
               60, "EsteiraInputDrift in Prometheus")
    p99 = httpx.get(f"{stack.prometheus_url}/api/v1/query", timeout=5, params={
        "query": "model_version:esteira_request_duration_seconds:p99_5m"}).json()["data"]["result"]
    assert p99, "no p99 latency recorded: the latency alert would be quiet for want of data"
    assert not [a for a in _alerts(stack.prometheus_url) if a["labels"]["alertname"] == "EsteiraLatencyP99OverBudget"]
    assert not [a for a in _alertmanager_alerts(stack.alertmanager_url)
                if a["labels"]["alertname"] == "EsteiraLatencyP99OverBudget"]


def test_dashboard_page_draws_charts_in_chromium(stack: StackConfig, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _require("chromium", "chromedriver")
    out = tmp_path / "dashboard"
    # `esteira dashboard` dispatches here (cli.main.COMMANDS); called in-process to spare the
    # pipeline CLI's TensorFlow import.
    code = dashboard_main(["--prometheus", stack.prometheus_url, "--out", str(out), "--range", "3m",
                           "--model", "demo", "--max-features", "2"])
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    empty = {line.split("no data: ", 1)[1] for line in printed.out.splitlines() if "no data: " in line}
    assert empty == NOT_YET_EXPORTED, printed.out

    page = out / "index.html"
    assert "<script src=" not in page.read_text(), "the page must not fetch scripts"
    browser = headless_chromium(Path(tempfile.mkdtemp(dir=tmp_path, prefix="chromium-")))
    try:
        browser.get(page.as_uri())
        drawn = int(browser.execute_script("return document.body.dataset.charts"))
        canvases = browser.find_elements("css selector", ".panel.drawn canvas")
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        titles = [e.text for e in browser.find_elements("css selector", "section h2")]
        screenshot = tmp_path / "dashboard.png"
        browser.save_screenshot(str(screenshot))
    finally:
        browser.quit()
    assert not errors, errors
    panels_with_data = sum(1 for p in json.loads(_page_data(page))["rows"] for q in p["panels"]
                           if any(v is not None for s in q["series"] for v in s["values"]))
    assert drawn == panels_with_data and len(canvases) >= drawn > 0
    assert any(t.startswith(("Input feature feature_0", "Input feature feature_1")) for t in titles)
    assert screenshot.stat().st_size > 10_000


def _page_data(page: Path) -> str:
    text = page.read_text()
    start = text.index("const DATA = ") + len("const DATA = ")
    return text[start:text.index(";</script>", start)].replace("<\\/", "</")
