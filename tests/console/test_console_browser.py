"""The review console in Debian's Chromium: figures equal MLflow's and MLMD's, predictions equal the
server's, only approvers move the champion (and the server's stable label follows), every action and
personal-data report view is audited, and bad sources show a message instead of a trace."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import pytest

from console.settings import ConsoleSettings
from privacy.audit import read_records
from serving.client import RestClient
from tests.browser import headless_chromium
from tests.console.conftest import APPROVER, FEATURES, MODEL, REVIEWER, SLICE, ConsoleServer, Setup
from tracking.registry import CHAMPION, aliases_of

SHOTS = Path(tempfile.gettempdir()) / "esteira-console-shots"  # looked at by hand, never committed


@pytest.fixture(scope="module")
def console(setup: Setup):
    server = ConsoleServer(setup.settings)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    driver = headless_chromium(tmp_path_factory.mktemp("chromium"))
    driver.set_window_size(1400, 1000)
    yield driver
    driver.quit()


def visit(browser, url: str, shot: str | None = None, status: int | None = None) -> None:
    """Open ``url`` and fail on any console error; optionally keep a screenshot to look at."""
    browser.get(url)
    loaded(browser, shot, status)


def loaded(browser, shot: str | None = None, status: int | None = None) -> None:
    """The page now shown logged no console error (but the page's own HTTP ``status``, when one is
    expected: Chromium logs a refused request as an error); optionally keep a screenshot."""
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    if status is not None:
        assert len(errors) == 1 and f"status of {status} " in errors[0], errors
        errors = []
    assert not errors, errors
    if shot:
        SHOTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(SHOTS / f"{shot}.png"))


def sign_in(browser, console: ConsoleServer, token: str, next_page: str = "/") -> None:
    browser.delete_all_cookies()
    visit(browser, console.url + f"/login?next={next_page}")
    browser.find_element("id", "token").send_keys(token)
    browser.find_element("id", "sign-in").click()
    submitted(browser, "[data-fact=caller]")


def text(browser, selector: str) -> str:
    return browser.find_element("css selector", selector).text


def submitted(browser, selector: str, shot: str | None = None, status: int | None = None) -> None:
    """After a click that submits a form: wait until the answer page shows ``selector``, then check it."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(lambda driver: driver.find_elements("css selector", selector))
    loaded(browser, shot, status)


def mlflow_client(setup: Setup):
    from console.registry import open_client

    return open_client(setup.settings.tracking_uri)


def served_stable_version(setup: Setup) -> str:
    with RestClient(setup.rest_url) as client:
        return str(client.metadata(MODEL, label="stable")["model_spec"]["version"])


def test_pages_show_mlflows_and_mlmds_figures(setup: Setup, console: ConsoleServer, browser) -> None:
    import tensorflow as tf

    sign_in(browser, console, REVIEWER[1])
    visit(browser, console.url + "/", "versions")
    client = mlflow_client(setup)
    aliases = aliases_of(client.get_registered_model(MODEL))
    for version in client.search_model_versions(f"name = '{MODEL}'"):
        run = client.get_run(version.run_id)
        metrics = run.data.metrics
        row = f'tr[data-version="{version.version}"]'
        assert text(browser, f"{row} [data-fact=auc]") == f"{metrics['eval.auc']:.4f}"
        assert text(browser, f"{row} [data-fact=auc_pr]") == f"{metrics['eval.auc_precision_recall']:.4f}"
        epsilon = metrics.get("training.dp_epsilon")
        assert text(browser, f"{row} [data-fact=epsilon]") == (f"{epsilon:.3f}" if epsilon is not None else "no DP")
        assert text(browser, f"{row} [data-fact=state]") == "AVAILABLE"
        assert text(browser, f"{row} [data-fact=fingerprint]") == run.data.params["data.input_sha256"][:16]
        assert text(browser, f"{row} [data-fact=aliases]").split() == sorted(
            alias for alias, number in aliases.items() if number == str(version.version))
    assert text(browser, 'tr[data-version="1"] [data-label]') == "stable"
    assert text(browser, "[data-fact=caller]").startswith(REVIEWER[0])

    visit(browser, console.url + "/versions/2", "version")
    assert int(browser.execute_script("return document.body.dataset.charts")) == 3  # scores, calibration, loss
    logged = json.loads(Path(client.download_artifacts(
        client.get_model_version(MODEL, "2").run_id, "evaluation/metrics.json", str(setup.root))).read_text())
    for name, value in logged["candidate"][SLICE].items():
        assert text(browser, f'tr[data-slice="{SLICE}"] [data-metric="{name}"]') == f"{value:.4f}"
    charts = json.loads(browser.execute_script("return document.getElementById('chart-data').textContent"))
    eval_files = [str(p) for p in (Path(setup.root) / "examples" / "Split-eval").glob("*")]
    rows_in_mlmd = sum(1 for _ in tf.data.TFRecordDataset(eval_files, compression_type="GZIP"))
    assert charts["scores"]["rows"] == rows_in_mlmd
    assert sum(charts["calibration"]["rows"]) == rows_in_mlmd
    assert pytest.approx(sum(charts["scores"]["series"]["2"]["share"])) == 1.0

    visit(browser, console.url + "/compare", "compare")
    assert (text(browser, "[data-fact=challenger]"), text(browser, "[data-fact=champion]")) == ("2", "1")
    worse = browser.find_elements("css selector", "#slices tr.worse")
    assert [(row.get_attribute("data-slice"), row.get_attribute("data-metric")) for row in worse] == [(SLICE, "auc")]
    assert text(browser, '#metrics tr[data-metric="auc"] .diff') == "+0.0118"
    assert int(browser.execute_script("return document.body.dataset.charts")) == 1
    compared = json.loads(browser.execute_script("return document.getElementById('chart-data').textContent"))
    assert sorted(compared["scores"]["series"]) == ["1", "2"] and compared["scores"]["rows"] == rows_in_mlmd


def test_prediction_form_returns_the_servers_answers(setup: Setup, console: ConsoleServer, browser) -> None:
    from serving.demo_model import raw_row

    sign_in(browser, console, REVIEWER[1])
    visit(browser, console.url + "/predict")
    values = raw_row(seed=11, features=FEATURES)
    for name, value in values.items():
        field = browser.find_element("name", name)
        field.clear()
        field.send_keys(repr(value))
    browser.find_element("id", "predict").click()
    submitted(browser, "#answers", "predict")
    with RestClient(setup.rest_url) as client:
        for version, serving in (("2", 200), ("1", 100)):
            expected = client.predict(MODEL, inputs={name: [value] for name, value in values.items()},
                                      signature="predict_raw", version=serving)
            shown = float(text(browser, f'#answers tr[data-version="{version}"] [data-fact=score]'))
            assert shown == pytest.approx(expected[0][0], abs=1e-6)
    records = list(read_records(setup.settings.audit_log))
    assert {"event": "console.predict", "actor": REVIEWER[0], "versions": ["2", "1"]}.items() <= records[-1].items()


def test_personal_data_report_views_are_audited(setup: Setup, console: ConsoleServer, browser) -> None:
    sign_in(browser, console, REVIEWER[1])
    visit(browser, console.url + "/versions/1")
    browser.find_element("css selector", "[data-report=lgpd]").click()
    submitted(browser, "[data-fact=version]")
    assert text(browser, "[data-fact=version]") == "100"
    last = list(read_records(setup.settings.audit_log))[-1]
    assert (last["event"], last["actor"], last["report"], last["personal_data"]) == (
        "console.report.view", REVIEWER[0], "100/lgpd_report.html", True)


def test_only_an_approver_moves_the_champion_and_the_stable_label_follows(
        setup: Setup, console: ConsoleServer, browser) -> None:
    client = mlflow_client(setup)
    sign_in(browser, console, REVIEWER[1])
    visit(browser, console.url + "/")
    browser.find_element("id", "promote-version").send_keys("2")
    browser.find_element("id", "promote").click()
    submitted(browser, "[data-problem=page]", "refused", status=403)
    assert "only approvers may promote" in text(browser, "[data-problem=page]")
    assert aliases_of(client.get_registered_model(MODEL))[CHAMPION] == "1"
    assert served_stable_version(setup) == "100"
    refused = list(read_records(setup.settings.audit_log))[-1]
    assert (refused["event"], refused["actor"], refused["version"]) == ("console.promote.refused", REVIEWER[0], "2")

    sign_in(browser, console, APPROVER[1])
    visit(browser, console.url + "/")
    browser.find_element("css selector", '[data-promote="2"]').click()
    submitted(browser, "[data-fact=moved]", "promoted")
    assert "champion 1 → 2" in text(browser, "[data-fact=moved]")
    assert aliases_of(client.get_registered_model(MODEL))[CHAMPION] == "2"
    assert served_stable_version(setup) == "200"
    moved = list(read_records(setup.settings.audit_log))[-1]
    assert (moved["event"], moved["actor"], moved["champion_after"]) == (
        "registry.promote", f"{APPROVER[0]} (approver, console)", "2")

    visit(browser, console.url + "/")
    browser.find_element("id", "rollback").click()
    submitted(browser, "[data-fact=moved]")
    assert "champion 2 → 1" in text(browser, "[data-fact=moved]")
    assert aliases_of(client.get_registered_model(MODEL))[CHAMPION] == "1"
    assert served_stable_version(setup) == "100"


def test_an_unknown_version_is_a_message_in_the_page(console: ConsoleServer, browser) -> None:
    sign_in(browser, console, REVIEWER[1])
    visit(browser, console.url + "/versions/99", "unknown", status=404)
    assert "no registered version '99' (versions: 1, 2" in text(browser, "[data-problem=page]")
    assert "Traceback" not in browser.page_source


def _page(settings: ConsoleSettings, path: str) -> httpx.Response:
    server = ConsoleServer(settings)
    try:
        return httpx.get(server.url + path, headers={"Authorization": f"Bearer {REVIEWER[1]}"}, timeout=60)
    finally:
        server.stop()


def test_a_down_model_server_is_a_message_in_the_page(setup: Setup) -> None:
    from dataclasses import replace

    from serving.server import pick_free_port

    down = replace(setup.settings, server_url=f"http://127.0.0.1:{pick_free_port()}")
    page = _page(down, "/")
    assert page.status_code == 200 and "is not reachable" in page.text and "server unreachable" in page.text
    assert "Traceback" not in page.text


def test_a_missing_mlflow_store_is_a_message_in_the_page(setup: Setup) -> None:
    from dataclasses import replace

    missing = setup.root / "nowhere" / "mlflow.db"
    page = _page(replace(setup.settings, tracking_uri=f"sqlite:///{missing}"), "/versions/2")
    assert page.status_code == 503 and f"no MLflow store at {missing}" in page.text
    assert not missing.parent.exists(), "the console must not create an empty store"


def test_a_missing_metadata_store_leaves_the_rest_of_the_page(setup: Setup) -> None:
    from dataclasses import replace

    page = _page(replace(setup.settings, metadata_path=setup.root / "gone.sqlite"), "/versions/2")
    assert page.status_code == 200 and "no metadata database at" in page.text
    assert 'data-fact="auc">0.9530' in page.text


# ---- the review channel for contested decisions (LGPD art. 20) ---------------------------------------------

@pytest.fixture(scope="module")
def contested(setup: Setup):
    """A server answering a real breast-cancer model (with its explain signature) and auditing every access,
    and a console for that model reading the server's audit log; the module's tokens and registry."""
    from tests.explained_models import shared_breast_cancer_model
    from tests.serving.serving_helpers import start_server, write_config

    root = setup.root / "contested"
    model = shared_breast_cancer_model(root / "serving")
    config = write_config(root / "models.config", {"breast_cancer": str(root / "serving")})
    server = start_server(root, f"--model_config_file={config}", f"--audit_log_file={root / 'access.log'}")
    settings = ConsoleSettings(
        model_name="breast_cancer", tracking_uri=setup.settings.tracking_uri, base_path=root / "serving",
        model_config_file=config, server_url=server.rest_url, audit_log=root / "console.jsonl",
        reviewer_tokens=setup.settings.reviewer_tokens, approver_tokens=setup.settings.approver_tokens,
        access_audit_logs=(root / "access.log",))
    console = ConsoleServer(settings)
    yield model, server, settings, console
    console.stop()
    server.stop()


def test_a_contested_decision_is_reviewed_by_an_approver_with_an_audit_trail(contested, browser) -> None:
    model, server, settings, console = contested
    decided = httpx.post(f"{server.rest_url}/v1/models/breast_cancer:predict", timeout=30,
                         json={"signature_name": "serving_raw", "instances": model.rows[:1]},
                         headers={"X-Request-Id": "loan-2024-0007"}).json()["predictions"][0][0]

    sign_in(browser, console, REVIEWER[1], "/contests")  # this console's model has no registry: no versions page
    assert browser.find_elements("css selector", "[data-fact=no_open_cases]")
    browser.find_element("id", "request_id").send_keys("loan-2024-0007")
    browser.find_element("id", "lookup").click()
    submitted(browser, "[data-fact=version]", "contest-case")
    assert text(browser, "[data-fact=version]") == "1"
    assert float(text(browser, '[data-fact=score][data-row="0"]')) == pytest.approx(decided, abs=1e-6)
    reasons = browser.find_elements("css selector", 'table.reasons[data-row="0"] [data-fact=reason]')
    assert len(reasons) == 3 and all(reason.text for reason in reasons)
    assert abs(float(text(browser, "[data-fact=completeness]"))) < 0.05
    line = next(json.loads(raw) for raw in (settings.access_audit_logs[0]).read_text().splitlines()
                if json.loads(raw)["record"].get("request_id") == "loan-2024-0007")
    assert f"line {line['seq']}" in text(browser, "[data-fact=decision_audit]")
    assert browser.find_elements("css selector", "[data-fact=no_events]")

    browser.find_element("id", "channel").clear()
    browser.find_element("id", "channel").send_keys("letter from the data subject")
    browser.find_element("id", "record-contest").click()
    submitted(browser, '[data-event="decision.contested"]')
    assert browser.find_elements("css selector", "[data-fact=needs_approver]")  # a reviewer cannot decide it
    refused = httpx.post(f"{console.url}/contests/loan-2024-0007/outcome", timeout=30,
                         data={"outcome": "overturned", "reason": "x"},
                         headers={"Authorization": f"Bearer {REVIEWER[1]}"})
    assert refused.status_code == 403
    visit(browser, console.url + "/contests")
    assert browser.find_elements("css selector", 'tr[data-request-id="loan-2024-0007"]')

    sign_in(browser, console, APPROVER[1], "/contests")
    visit(browser, console.url + "/contests?request_id=loan-2024-0007")
    browser.find_element("id", "record-outcome").click()  # no reason given: refused, nothing recorded
    submitted(browser, "[data-problem=input]", status=400)
    assert "state the reason" in text(browser, "[data-problem=input]")
    browser.find_element("id", "reason").send_keys("the sample was re-read by a pathologist: benign")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "outcome")).select_by_value("overturned")
    browser.find_element("id", "record-outcome").click()
    submitted(browser, "[data-fact=outcome]", "contest-decided")
    assert text(browser, "[data-fact=outcome]") == "overturned"

    exported = httpx.get(f"{console.url}/contests/loan-2024-0007.json", timeout=30,
                         headers={"Authorization": f"Bearer {APPROVER[1]}"}).json()
    assert exported["decision"]["scores"][0] == pytest.approx(decided, abs=1e-6)
    assert exported["decision_audit"] == {"log": str(settings.access_audit_logs[0]), "seq": line["seq"],
                                          "hash": line["hash"]}
    assert exported["contest"]["channel"] == "letter from the data subject"
    assert exported["outcome"]["outcome"] == "overturned" and exported["outcome"]["actor"] == APPROVER[0]
    assert len(exported["explanation"]["predictions"][0]["reasons"]) == 3

    events = [r for r in read_records(settings.audit_log) if r.get("request_id") == "loan-2024-0007"]
    assert [r["event"] for r in events if r["event"].startswith("decision.")] == [
        "decision.contested", "decision.reviewed"]
    assert [r["event"] for r in events if r["event"] == "console.decision.outcome.refused"]
    reviewed = next(r for r in events if r["event"] == "decision.reviewed")
    assert reviewed["decision_audit"]["hash"] == line["hash"] and reviewed["reason"].startswith("the sample")
    access = [r for r in read_records(settings.access_audit_logs[0])
              if r.get("explains_request_id") == "loan-2024-0007"]
    assert access and all(r["api"] == "explain" for r in access)  # every look at the decision is audited
