"""Continuous training: new data or a drift alert → run the pipeline → the pushed version as canary → soak →
decide from Prometheus with the canary alert rules → promote or roll back → the decision and its evidence
in the audit log.

Every step is a function here, and a task of the ``esteira-continuous-training`` DAG
(orchestration/dags/esteira_continuous_training.py); each logs what it decided and why. The steps are the
existing ones: the canary labels of deploy.canary, its soak on Prometheus' canary alerts, and the champion
move of tracking (registry alias, server labels, audit record). Nothing is promoted when Prometheus cannot
be read: the soak raises, its task fails, and the decision tasks do not run.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from errors import EsteiraError
from pipeline.config import UseCaseConfig, input_glob, load_config

log = logging.getLogger(__name__)

PROMOTE, ROLLBACK = "promote", "rollback"
ACTOR = "airflow:esteira-continuous-training"
STATE_FILE = "continuous_training.json"    # beside the pipeline root: the data version last trained on


class ContinuousTrainingError(EsteiraError, RuntimeError):
    """A step cannot go on; the message says why and what to do. The steps after it do not run."""


@dataclass(frozen=True)
class Settings:
    """What the DAG acts on, from ESTEIRA_CT_* variables (the DAG file reads them at parse time)."""

    config_path: Path
    home: Path
    model_config_file: Path          # the models.config whose stable/canary labels the server serves
    prometheus_url: str
    audit_log: Path
    soak_seconds: float = 600.0
    soak_every: float = 30.0
    server: str | None = None        # gRPC host:port of the server to reload at once (else it polls the file)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if environ is None else environ
        home = Path(env.get("ESTEIRA_HOME") or Path.cwd()).resolve()

        def path(name: str, default: str) -> Path:
            value = Path(env.get(name) or default)
            return value if value.is_absolute() else home / value

        try:
            soak = float(env.get("ESTEIRA_CT_SOAK_SECONDS", "600"))
            every = float(env.get("ESTEIRA_CT_SOAK_EVERY", "30"))
        except ValueError:
            raise ContinuousTrainingError("ESTEIRA_CT_SOAK_SECONDS and ESTEIRA_CT_SOAK_EVERY must be numbers of "
                                          "seconds, e.g. 600 and 30") from None
        return cls(config_path=path("ESTEIRA_CT_CONFIG", "configs/breast_cancer.yaml"), home=home,
                   model_config_file=path("ESTEIRA_CT_MODEL_CONFIG", "configs/serving/models.config"),
                   prometheus_url=env.get("ESTEIRA_CT_PROMETHEUS", "http://127.0.0.1:9090"),
                   audit_log=path("ESTEIRA_CT_AUDIT_LOG", "outputs/audit/registry.jsonl"),
                   soak_seconds=soak, soak_every=every, server=env.get("ESTEIRA_CT_SERVER") or None)

    def config(self) -> UseCaseConfig:
        return load_config(self.config_path, base=self.home)


# ---- trigger ----------------------------------------------------------------------------------------

def data_version(config: UseCaseConfig) -> str:
    """The version of the input data: its DVC hash when DVC tracks it, else SHA-256 over its files."""
    from privacy.data_version import read_data_version
    from privacy.fingerprint import combined_sha256, sha256_file

    version = read_data_version(config.data.source) if config.data.source.exists() else None
    if version is not None and version.matches:
        return f"dvc:{version.recorded_md5}"
    files = sorted(config.data.source.glob(input_glob(config.data.input_pattern)))
    if not files:
        raise ContinuousTrainingError(f"no input files match {config.data.input_pattern!r} under "
                                      f"{config.data.source}; write the data first")
    return "sha256:" + combined_sha256(sha256_file(str(file)) for file in files)


def _state_path(config: UseCaseConfig) -> Path:
    return config.pipeline.root.parent / STATE_FILE


def last_trained_version(config: UseCaseConfig) -> str | None:
    path = _state_path(config)
    return json.loads(path.read_text()).get("data_version") if path.is_file() else None


def trigger_reason(settings: Settings, conf: dict[str, Any] | None) -> str | None:
    """Why to train now: the alerts of an Alertmanager-triggered run, new data, or None (nothing to do)."""
    alerts = (conf or {}).get("alerts") or []
    if alerts:
        names = sorted({alert.get("labels", {}).get("alertname", "?") for alert in alerts})
        return f"alert: {', '.join(names)}"
    config = settings.config()
    current, trained = data_version(config), last_trained_version(config)
    if current != trained:
        return f"new data: {current} (last trained on {trained or 'nothing'})"
    return None


# ---- pipeline ---------------------------------------------------------------------------------------

def _versions(base: Path) -> set[int]:
    return {int(p.name) for p in base.iterdir() if p.name.isdigit()} if base.is_dir() else set()


def run_pipeline(settings: Settings) -> int | None:
    """``esteira run`` on the config; the version it pushed, or None when its gates kept the model back."""
    config = settings.config()
    trained_on = data_version(config)
    before = _versions(config.serving.base_path)
    result = subprocess.run([sys.executable, "-m", "cli", "run", "--config", str(settings.config_path)],
                            cwd=settings.home, capture_output=True, text=True)
    log.info("esteira run exited %d:\n%s", result.returncode, result.stdout[-4000:])
    if result.returncode != 0:
        raise ContinuousTrainingError(f"esteira run --config {settings.config_path} failed "
                                      f"({result.returncode}):\n{result.stderr[-3000:]}")
    _state_path(config).write_text(json.dumps({"data_version": trained_on}))
    pushed = sorted(_versions(config.serving.base_path) - before)
    return pushed[-1] if pushed else None


# ---- canary -----------------------------------------------------------------------------------------

def start_canary(settings: Settings, version: int) -> str:
    from deploy import canary

    return str(canary.start(settings.model_config_file, settings.config().serving.model_name, version))


def soak(settings: Settings) -> list[str]:
    """The canary alerts that fired during the soak ([] when none did); raises when Prometheus is unreachable."""
    from deploy import canary

    model = settings.config().serving.model_name
    try:
        return canary.soak(settings.prometheus_url, model, settings.soak_seconds, settings.soak_every)
    except canary.CanaryError as error:
        raise ContinuousTrainingError(f"{error}; nothing is promoted without Prometheus' evidence") from None


def canary_evidence(prometheus_url: str, model: str) -> list[dict[str, Any]]:
    """Each canary rule as Prometheus evaluates it now: its query, state, and the query's values for ``model``."""
    from deploy.canary import CANARY_ALERTS

    base = prometheus_url.rstrip("/")
    try:
        groups = httpx.get(f"{base}/api/v1/rules", params={"type": "alert"}, timeout=10).json()["data"]["groups"]
        evidence = []
        for rule in (r for group in groups for r in group["rules"] if r["name"] in CANARY_ALERTS):
            answer = httpx.get(f"{base}/api/v1/query", params={"query": rule["query"]}, timeout=10).json()
            values = [{"labels": row["metric"], "value": row["value"][1]} for row in answer["data"]["result"]
                      if row["metric"].get("model") == model]
            evidence.append({"alert": rule["name"], "query": rule["query"], "state": rule["state"],
                             "for_seconds": rule.get("duration"), "values": values})
    except (httpx.HTTPError, KeyError, ValueError) as error:
        raise ContinuousTrainingError(f"cannot read the canary rules from Prometheus at {prometheus_url}: {error}; "
                                      "nothing is promoted without Prometheus' evidence") from None
    missing = sorted(set(CANARY_ALERTS) - {item["alert"] for item in evidence})
    if missing:
        raise ContinuousTrainingError(f"Prometheus at {prometheus_url} has no rule {', '.join(missing)}; load "
                                      "configs/monitoring/rules/alerts.yml into it")
    return evidence


def decide(firing: list[str]) -> str:
    return ROLLBACK if firing else PROMOTE


def promote(settings: Settings, version: int) -> str:
    """The registry's champion moves to the canary's registered version; the stable label follows it."""
    from tracking.champion import change_champion
    from tracking.registry import plan_promote, registered_version_for
    from tracking.store import LOCAL_FOLDER, connect, resolve_target

    config = settings.config()
    target = resolve_target(config.tracking.uri, config.pipeline.root / LOCAL_FOLDER)
    client = connect(target)
    registered = registered_version_for(client, config.serving.model_name, str(version))
    if registered is None:
        raise ContinuousTrainingError(f"serving version {version} of {config.serving.model_name} is not registered "
                                      f"in {target.uri}; the MlflowLogger registers pushed versions")
    move = plan_promote(client, config.serving.model_name, str(registered.version))
    before, after = change_champion(client, move, settings.model_config_file, action=PROMOTE, actor_name=ACTOR,
                                    audit_log=settings.audit_log, tracking_uri=target.uri, server=settings.server)
    return f"champion {move.before or 'none'} -> {move.after}; labels {before} -> {after}"


def rollback(settings: Settings) -> str:
    from deploy import canary

    return str(canary.rollback(settings.model_config_file, settings.config().serving.model_name))


def audit_decision(settings: Settings, *, trigger: str, version: int, decision: str, firing: list[str],
                   evidence: list[dict[str, Any]], action: str) -> str:
    """One hash-chained audit record: what was decided for which version, why, and Prometheus' evidence."""
    from privacy.audit import AuditLog

    with AuditLog(settings.audit_log) as audit:
        return audit.append({
            "event": "continuous_training.decision", "actor": ACTOR, "model": settings.config().serving.model_name,
            "version": version, "trigger": trigger, "decision": decision, "firing_canary_alerts": firing,
            "soak_seconds": settings.soak_seconds, "prometheus": settings.prometheus_url, "evidence": evidence,
            "action": action, "model_config_file": str(settings.model_config_file)})
