"""`make canary-check` reads the canary alerts from a real Prometheus (started here on loopback): it
fails while one fires for the model and passes for a model without one."""
from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from deploy import canary
from observability.stack import free_port, wait_until

from .conftest import make


@pytest.fixture(scope="module")
def prometheus_with_a_firing_canary_alert(tmp_path_factory: pytest.TempPathFactory):
    """A Prometheus whose only rule is a canary alert that fires for `fraud` at once."""
    root = tmp_path_factory.mktemp("prometheus")
    rule = {"alert": "EsteiraCanaryErrorsWorse", "expr": "vector(1)", "labels": {"model": "fraud"}}
    (root / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "canary", "interval": "1s", "rules": [rule]}]}))
    (root / "prometheus.yml").write_text(yaml.safe_dump({"global": {"evaluation_interval": "1s"},
                                                          "rule_files": ["rules.yml"]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "prometheus.log"
    with log.open("w") as out:
        process = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        def firing() -> bool:
            response = httpx.get(f"{url}/api/v1/alerts")
            if response.status_code != 200:  # a Prometheus still starting answers 503 with a plain-text body
                return False
            return any(a["state"] == "firing" for a in response.json()["data"]["alerts"])

        wait_until(firing, 30, "the canary alert firing", process, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_canary_check_fails_while_a_canary_alert_fires(prometheus_with_a_firing_canary_alert) -> None:
    result = make("canary-check", f"PROMETHEUS_URL={prometheus_with_a_firing_canary_alert}", "MODEL=fraud")
    assert result.returncode != 0  # make reports the failed step with its own code
    assert "canary of fraud: firing EsteiraCanaryErrorsWorse: roll back" in result.stderr


def test_canary_check_passes_for_a_model_without_canary_alerts(prometheus_with_a_firing_canary_alert) -> None:
    assert canary.soak(prometheus_with_a_firing_canary_alert, "breast_cancer", seconds=0.5, every=0.2) == []
    assert canary.soak(prometheus_with_a_firing_canary_alert, "fraud", seconds=30) == ["EsteiraCanaryErrorsWorse"]


def test_canary_alert_names_are_the_monitoring_rules() -> None:
    rules = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/monitoring/rules/alerts.yml").read_text())
    names = {rule.get("alert") for group in rules["groups"] for rule in group["rules"]}
    assert set(canary.CANARY_ALERTS) <= names


def test_an_unreachable_prometheus_is_named() -> None:
    with pytest.raises(canary.CanaryError, match=r"cannot read alerts from Prometheus at http://127\.0\.0\.1:9"):
        canary.firing_canary_alerts("http://127.0.0.1:9", "fraud", timeout=2)
