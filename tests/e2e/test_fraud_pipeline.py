"""The fraud use case end to end on small simulated data, in one module because one fraud run serves
all of it: privacy at ingestion, the CNN+LSTM model, a blessed push and a leak scan proving no raw
personal value reached any artifact, MLMD or serving; then a second pushed version, the drift report
between the two written by the pipeline and by `esteira report drift`, the LGPD report checked in
headless Chromium against MLMD, and the model gate."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from evidence import governance, lineage
from evidence.evaluation import CANDIDATE, evaluation_metrics
from pipeline.config import UseCaseConfig, load_config
from pipeline.datasets.fraud_simulator import personal_values
from pipeline.report import RunReport, load_report
from privacy.audit import AuditLog
from privacy.leak_scan import find_values, values_in_sqlite
from tests.browser import headless_chromium

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KEY = "e2e-fraud-key-" + "k" * 50
ACTOR = "e2e-auditor"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@dataclass
class FraudWorkspace:
    root: Path
    env: dict[str, str]
    config_path: Path
    config: UseCaseConfig
    first_report: RunReport
    first_stdout: str


def esteira(root: Path, env: dict[str, str], *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fraud_workspace(tmp_path_factory: pytest.TempPathFactory) -> FraudWorkspace:
    """Simulated data (3 days, 24,000 transactions) and a first run that pushes a blessed version."""
    root = tmp_path_factory.mktemp("fraud")
    env = dict(os.environ, ESTEIRA_PSEUDONYM_KEY=KEY, ESTEIRA_ACTOR=ACTOR)
    data = esteira(root, env, "data", "fraud", "--transactions", "24000", "--days", "3", "--seed", "11",
                   "--out", "data/fraud", "--no-progress")
    assert data.returncode == 0, data.stderr[-2000:]
    doc = yaml.safe_load((REPO / "configs" / "fraud.yaml").read_text())
    doc["training"].update(train_steps=150, eval_steps=5, epochs=1)
    # Out of time as configs/fraud.yaml, on 3 small days: train on the first two, evaluate on the third.
    doc["data"]["split"].update(train_days=2, delay_days=0, eval_days=1)
    # 150 steps on 3 small days (about 24 eval frauds): the AP floor sits above chance (the fraud rate,
    # 0.003) so it still gates; a later retrain must push, not compete with the first.
    doc["evaluation"]["gate"].update(lower_bound=0.01, change_threshold=-1.0)
    doc["governance"]["access_audit_logs"] = ["audit/serving-audit.log"]
    doc["optimization"] = None  # TFLite variants: tests/e2e/test_breast_cancer_pipeline.py
    config_path = root / "fraud.yaml"
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = esteira(root, env, "run", "--config", str(config_path))
    assert run.returncode == 0, run.stderr[-4000:]
    config = load_config(config_path, base=root)
    return FraudWorkspace(root, env, config_path, config,
                          load_report(config.pipeline.metadata_path, config.pipeline.name), run.stdout)


@pytest.fixture(scope="module")
def fraud_run(fraud_workspace: FraudWorkspace):
    workspace = fraud_workspace
    return workspace.root, workspace.config, workspace.first_report, workspace.first_stdout


def test_fraud_pipeline_pushes_a_blessed_model(fraud_run) -> None:
    _root, config, report, _stdout = fraud_run
    assert not report.failed
    assert report.blessed is True, report.blessing_failures
    assert report.pushed is True
    assert (config.serving.base_path / report.version / "saved_model.pb").is_file()
    assert "recall_at_fpr_0.01" in report.metrics and "auc_precision_recall" in report.metrics
    # the Evaluator compared the protected groups (governance.protected_attributes) on the eval split
    assert [table.attribute for table in report.fairness] == ["age_band", "cep_region"]
    assert all(sum(group.examples for group in table.groups) == report.metrics["example_count"]
               for table in report.fairness)


def test_the_readmes_fraud_request_is_answered_by_the_pushed_model(fraud_run) -> None:
    """docs/requests/fraud.json, the body the README sends, fits the serving_raw signature of a fresh model."""
    import tensorflow as tf

    _root, config, report, _stdout = fraud_run
    signature = tf.saved_model.load(str(config.serving.base_path / report.version)).signatures["serving_raw"]
    specs = signature.structured_input_signature[1]
    row = json.loads((REPO / "docs" / "requests" / "fraud.json").read_text())["instances"][0]
    assert set(row) == set(specs)
    probability = signature(**{name: tf.constant([value], dtype=specs[name].dtype)
                               for name, value in row.items()})["probability"].numpy()
    assert probability.shape == (1, 1) and 0.0 <= probability[0, 0] <= 1.0


def test_examples_carry_the_ingestion_evidence(fraud_run) -> None:
    _root, config, _report, _ = fraud_run
    store = lineage.open_store(config.pipeline.metadata_path)
    trace = lineage.trace_pushed_model(store, lineage.pushed_models(store)[-1])
    properties = trace.examples.custom_properties
    assert len(properties["input_sha256"].string_value) == 64
    assert properties["pseudonym_key_is_demo"].int_value == 0
    # every row read is accounted for: written, suppressed by k-anonymity, or (time split) an eval row of a
    # card already known compromised, read only as context
    assert properties["rows_in"].int_value == (properties["rows_out"].int_value
                                               + properties["rows_suppressed"].int_value
                                               + properties["eval_known_compromised_rows"].int_value)
    assert properties["eval_known_compromised_rows"].int_value > 0
    assert properties["privacy_policy_sha256"].string_value == config.privacy.sha256()


def test_no_raw_personal_value_reaches_artifacts_mlmd_or_serving(fraud_run) -> None:
    root, config, _report, _ = fraud_run
    needles = personal_values(root / "data" / "fraud") | {KEY}
    assert len(needles) > 1000
    assert find_values(root / "data" / "fraud", needles), "the scan must find PII in the raw input"
    assert find_values(config.pipeline.root, needles) == {}
    assert find_values(config.serving.base_path, needles) == {}
    assert values_in_sqlite(config.pipeline.metadata_path, needles) == set()


@pytest.fixture(scope="module")
def two_pushes(fraud_workspace: FraudWorkspace):
    """The shared first run pushed version A; a retrain on the same span with more steps pushes version B."""
    workspace = fraud_workspace
    run = esteira(workspace.root, workspace.env, "run", "--config", str(workspace.config_path),
                  "--set", "training.train_steps=170")
    assert run.returncode == 0, run.stderr[-4000:]
    store = lineage.open_store(workspace.config.pipeline.metadata_path)
    versions = [a.custom_properties["pushed_version"].string_value for a in lineage.pushed_models(store)]
    assert len(versions) == 2, versions
    return workspace.root, workspace.env, workspace.config_path, workspace.config, versions


def report_artifacts(config) -> list:
    store = lineage.open_store(config.pipeline.metadata_path)
    return sorted(store.get_artifacts_by_type(governance.REPORT_ARTIFACT), key=lambda a: a.id)


def test_pipeline_reports_first_version_then_drift_against_it(two_pushes) -> None:
    _root, _env, _path, config, (first, second) = two_pushes
    reports = report_artifacts(config)
    assert [r.custom_properties["version"].string_value for r in reports] == [first, second]
    assert reports[0].custom_properties["drift"].string_value == "first version"
    assert not (Path(reports[0].uri) / "drift").exists()
    drift = json.loads((Path(reports[1].uri) / "drift" / "drift_report.json").read_text())
    assert drift["from"].startswith(f"version {first}") and drift["to"].startswith(f"version {second}")
    for report in reports:
        assert report.custom_properties[governance.ACTOR_PROPERTY].string_value == ACTOR
        assert (Path(report.uri) / "lgpd" / "lgpd_report.html").is_file()
        assert (Path(report.uri) / "lgpd" / "model_card.md").is_file()


def test_drift_command_compares_two_versions(two_pushes) -> None:
    root, env, config_path, _config, (first, second) = two_pushes
    out = root / "drift-cli"
    result = esteira(root, env, "report", "drift", "--config", str(config_path), "--from", first, "--to", second,
                     "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "drift_report.json").read_text())
    # Both versions trained on the same ingested span: the data did not move, the models did.
    assert report["features"] and all(f["score"] == pytest.approx(0.0, abs=1e-9) for f in report["features"])
    shift = report["predictions"]
    assert shift["examples"] > 100 and shift["mean_from"] != shift["mean_to"]
    html = (out / "drift_report.html").read_text()
    assert html.count("data:image/png;base64,") == len(report["features"]) + 1


def write_traffic(path: Path, version: str, model: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with AuditLog(path) as log:  # the record shape serving/service.py writes per request
        for caller, api in [("alice", "predict"), ("bob", "predict"), ("alice", "predict"), ("alice", "classify")]:
            log.append({"caller": caller, "entrypoint": "REST", "api": api, "model": model, "version": version,
                        "status": "OK", "latency_ms": 2.5, "request_bytes": 300})
        log.append({"caller": "carol", "entrypoint": "GRPC", "api": "predict", "model": model, "version": "1",
                    "status": "OK", "latency_ms": 2.5, "request_bytes": 300})


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "install Debian's chromium and chromium-driver (.ci/run does)"
    driver = headless_chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


def fact(driver, name: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-fact="{name}"]').text


def test_lgpd_report_in_chromium_matches_mlmd(two_pushes, browser) -> None:
    from selenium.webdriver.common.by import By

    root, env, config_path, config, (first, _second) = two_pushes
    write_traffic(config.governance.access_audit_logs[0], first, config.serving.model_name)
    out = root / "lgpd-cli"
    result = esteira(root, env, "report", "lgpd", "--config", str(config_path), "--version", first,
                     "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    store = lineage.open_store(config.pipeline.metadata_path)
    trace = lineage.trace_pushed_model(store, governance.find_pushed(store, first))
    examples = trace.examples.custom_properties
    browser.get((out / "lgpd_report.html").as_uri())
    assert fact(browser, "version") == first
    assert fact(browser, "verified").startswith("Evidence verified")
    assert fact(browser, "actor") == ACTOR
    for name in ("rows_in", "rows_out", "rows_suppressed"):
        assert fact(browser, name) == str(examples[name].int_value)
    assert fact(browser, "rows_known_compromised") == str(examples["eval_known_compromised_rows"].int_value)
    assert fact(browser, "input_sha256") == examples["input_sha256"].string_value
    assert fact(browser, "policy_sha256") == examples["privacy_policy_sha256"].string_value == config.privacy.sha256()
    assert fact(browser, "pseudonym_key_id") == examples["pseudonym_key_id"].string_value
    assert KEY not in browser.page_source
    assert fact(browser, "demo_key") == "no"
    assert fact(browser, "legal_basis") == config.governance.legal_basis
    gated = browser.find_element(By.CSS_SELECTOR, '[data-gate="Evaluator:average_precision"] .value').text
    evaluation = evaluation_metrics(lineage.output_artifacts(
        store, lineage.producer(store, trace.blessing.id), "evaluation")[0].uri)[CANDIDATE][""]  # overall slice
    assert gated == f"{evaluation['average_precision']:.4f}"
    # The Evaluator's fairness table reaches the report: each protected attribute's groups partition the eval
    # split, and the gap line names two of them; the legal basis of a generalized column is its own.
    for attribute in config.governance.protected_attributes:
        rows = browser.find_elements(By.CSS_SELECTOR, f'[data-attribute="{attribute}"] [data-group]')
        assert len(rows) >= 2
        counts = [int(row.find_elements(By.CSS_SELECTOR, "td")[1].text) for row in rows]
        assert sum(counts) == int(evaluation["example_count"])
        gap = browser.find_element(By.CSS_SELECTOR, f'[data-gap="{attribute}:false_positive_rate"]').text
        assert " vs " in gap and "bootstrap interval" in gap
    basis = browser.find_element(By.CSS_SELECTOR, '[data-column="birth_date"] .legal-basis').text
    assert basis.startswith(config.governance.field_legal_bases["birth_date"])
    assert fact(browser, "ripd") == config.governance.ripd
    assert fact(browser, "calls") == "4"
    callers = {row.get_attribute("data-caller"): row.find_element(By.CSS_SELECTOR, ".calls").text
               for row in browser.find_elements(By.CSS_SELECTOR, "[data-caller]")}
    assert callers == {"alice": "3", "bob": "1"}


def test_tampered_audit_log_fails_naming_the_first_bad_line(two_pushes) -> None:
    root, env, config_path, config, (first, _second) = two_pushes
    log = config.governance.access_audit_logs[0]
    if not log.exists():
        write_traffic(log, first, config.serving.model_name)
    tampered = root / "tampered.yaml"
    doc = yaml.safe_load(config_path.read_text())
    copy = root / "audit" / "tampered.log"
    lines = log.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"caller":"bob"', '"caller":"eve"')
    copy.write_text("".join(lines))
    doc["governance"]["access_audit_logs"] = [str(copy)]
    tampered.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = root / "lgpd-tampered"
    result = esteira(root, env, "report", "lgpd", "--config", str(tampered), "--version", first, "--out", str(out),
                     timeout=600)
    assert result.returncode == 1
    assert "VERIFICATION FAILED" in result.stderr and "line 2" in result.stderr
    report = json.loads((out / "lgpd_report.json").read_text())
    assert report["verified"] is False and report["access"]["logs"][0]["bad_line"] == 2
    assert "VERIFICATION FAILED" in (out / "lgpd_report.html").read_text()


def test_a_missing_audit_log_is_a_red_finding_unless_no_traffic_is_by_design(two_pushes) -> None:
    """The report never calls evidence verified that it did not read; `esteira report lgpd` exits 1 for it."""
    root, env, config_path, _config, (first, _second) = two_pushes
    doc = yaml.safe_load(config_path.read_text())
    absent = root / "audit" / "never-written.log"
    doc["governance"]["access_audit_logs"] = [str(absent)]
    unread = root / "unread.yaml"
    unread.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = root / "lgpd-unread"
    result = esteira(root, env, "report", "lgpd", "--config", str(unread), "--version", first, "--out", str(out),
                     timeout=600)
    assert result.returncode == 1 and f"NOT VERIFIED: {absent}: missing" in result.stderr
    html = (out / "lgpd_report.html").read_text()
    assert "Evidence verified" not in html and "NOT VERIFIED" in html
    result = esteira(root, env, "report", "lgpd", "--config", str(unread), "--version", first, "--out", str(out),
                     "--no-traffic-by-design", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "lgpd_report.json").read_text())["verification"] == "no-traffic-by-design"


def test_version_without_lineage_is_a_clear_error(two_pushes) -> None:
    root, env, config_path, _config, versions = two_pushes
    result = esteira(root, env, "report", "lgpd", "--config", str(config_path), "--version", "12345", timeout=300)
    assert result.returncode == 1
    assert "version 12345 has no lineage in this metadata store" in result.stderr
    assert all(version in result.stderr for version in versions)


def test_model_gate_refuses_a_model_short_of_the_champion_margin_and_attaches_the_reports(two_pushes, tmp_path) -> None:
    """`make model-gate` (model-gate.yml's step) on the second push: blessed, pushed and finite, but no
    average precision beats its champion's by 1.0, so the gate fails naming that metric alone and keeps
    the reports."""
    root, env, config_path, _config, versions = two_pushes
    doc = yaml.safe_load(config_path.read_text())
    doc["evaluation"]["gate"]["champion_margin"] = 1.0
    strict = root / "fraud-gate.yaml"
    strict.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = subprocess.run(
        ["make", "-f", str(REPO / "Makefile"), "--no-print-directory", "-s", "-o", "install", "model-gate",
         f"VENV={REPO / '.venv'}", f"CONFIG={strict}", f"GATE_OUT={tmp_path}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0, result.stdout
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    facts = verdict["facts"]
    assert facts["blessed"] is True and facts["pushed"] is True and facts["version"] == versions[1]
    assert facts["non_finite_weights"] == [] and facts["model_validation_reasons"] is None
    assert facts["metric"] == "average_precision"
    needed = facts["champion_value"] + 1.0
    assert verdict["reasons"] == [f"average_precision {facts['value']:.4f} does not beat the champion's "
                                  f"{facts['champion_value']:.4f} by the margin 1 (needs >= {needed:.4f})"]
    assert f"gate: FAILED: {verdict['reasons'][0]}" in result.stderr
    assert list((tmp_path / "drift").glob("*.html")) and list((tmp_path / "lgpd").glob("*.html"))
