"""The committed Prometheus and Alertmanager configuration passes promtool/amtool and its unit tests."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability.stack import MONITORING

ALERTS = MONITORING / "rules" / "alerts.yml"
RECORDING = MONITORING / "rules" / "recording.yml"
UNIT_TESTS = MONITORING / "tests" / "alerts_test.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install prometheus prometheus-alertmanager (.ci/run installs them)")
    return path


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_config_and_rules() -> None:
    assert "SUCCESS" in _run(_tool("promtool"), "check", "config", str(MONITORING / "prometheus.yml"))
    assert "SUCCESS" in _run(_tool("promtool"), "check", "rules", str(RECORDING), str(ALERTS))


def test_promtool_unit_tests_pass() -> None:
    assert "SUCCESS" in _run(_tool("promtool"), "test", "rules", str(UNIT_TESTS))


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests bite: the drift alert at PSI 0.5 instead of 0.2 makes them fail."""
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(RECORDING, rules / "recording.yml")
    (rules / "alerts.yml").write_text(
        ALERTS.read_text().replace("(esteira_feature_drift_psi) > 0.2", "(esteira_feature_drift_psi) > 0.5"))
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(UNIT_TESTS, tests / "alerts_test.yml")
    result = subprocess.run([_tool("promtool"), "test", "rules", str(tests / "alerts_test.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "EsteiraInputDrift" in result.stdout + result.stderr


def test_amtool_checks_alertmanager_config() -> None:
    assert "SUCCESS" in _run(_tool("amtool"), "check-config", str(MONITORING / "alertmanager.yml"))


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    for rule in _alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no unit test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no unit test where it stays quiet"


def test_every_alert_has_a_runbook_section() -> None:
    readme = (MONITORING / "README.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in readme.splitlines() if line.startswith("#")}
    for rule in _alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url == f"configs/monitoring/README.md#{rule['alert'].lower()}", url
        assert rule["alert"].lower() in anchors, f"README.md has no section '### {rule['alert']}'"
        assert rule["labels"]["severity"] in {"warning", "critical"}
