"""Canary rollout of a model version on Kubernetes: the `stable` and `canary` version labels in the
models.config the TF Serving ConfigMap is generated from, and the canary alerts that decide.

TF Serving serves exactly the labelled versions (a `specific` version policy), and Esteira's gateway
splits unpinned traffic between the labels by configs/serving/canary.json. Each step rewrites the
file; `make deploy-apply` renders it into a new ConfigMap, which rolls the servers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from errors import EsteiraError
from serving.config import read_model_config, write_model_config

STABLE, CANARY = "stable", "canary"
CANARY_ALERTS = ("EsteiraCanaryLatencyWorse", "EsteiraCanaryErrorsWorse")


class CanaryError(EsteiraError, RuntimeError):
    """The step cannot run; the message says why and what to do. Nothing was changed."""


@dataclass(frozen=True)
class LabelChange:
    model: str
    before: dict[str, int]
    after: dict[str, int]

    def __str__(self) -> str:
        return (f"{self.model}: labels {self.before} -> {self.after}, "
                f"serving versions {sorted(set(self.after.values()))}")


def _relabel(path: Path, model_name: str, change: dict[str, int] | None,
             use_label: tuple[str, str] | None) -> LabelChange:
    config = read_model_config(path)
    model = next((m for m in config.model_config_list.config if m.name == model_name), None)
    if model is None:
        names = ", ".join(m.name for m in config.model_config_list.config) or "none"
        raise CanaryError(f"model {model_name!r} is not in {path} (models: {names})")
    before = dict(model.version_labels)
    labels = dict(before)
    if use_label is not None:
        target, source = use_label
        if source not in labels:
            raise CanaryError(f"{model_name} has no {source!r} label in {path} (labels: {labels or 'none'}); "
                              f"start a canary first (make canary-start MODEL={model_name} VERSION=N)")
        labels[target] = labels[source]
    labels.update(change or {})
    if STABLE not in labels:
        raise CanaryError(f"{model_name} has no {STABLE!r} label in {path}: a canary needs a stable version "
                          f"to compare with; label the serving version stable first")
    model.ClearField("version_labels")
    for label, version in labels.items():
        model.version_labels[label] = version
    model.model_version_policy.ClearField("latest")
    model.model_version_policy.ClearField("all")
    model.model_version_policy.specific.ClearField("versions")
    model.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
    write_model_config(config, path)
    return LabelChange(model_name, before, labels)


def start(path: Path, model: str, version: int) -> LabelChange:
    """Label `version` canary; the gateway sends it the canary share of unpinned traffic."""
    if version < 1:
        raise CanaryError(f"version must be a positive model version folder name, got {version}")
    return _relabel(path, model, {CANARY: version}, None)


def promote(path: Path, model: str) -> LabelChange:
    """The canary becomes stable; the old stable version is unloaded."""
    return _relabel(path, model, None, (STABLE, CANARY))


def rollback(path: Path, model: str) -> LabelChange:
    """The canary label goes back to the stable version; the canary version is unloaded."""
    return _relabel(path, model, None, (CANARY, STABLE))


def firing_canary_alerts(prometheus_url: str, model: str, timeout: float = 10.0) -> list[str]:
    """The canary alerts Prometheus has firing for `model` (configs/monitoring/rules/alerts.yml)."""
    try:
        response = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/alerts", timeout=timeout)
        response.raise_for_status()
        alerts = response.json()["data"]["alerts"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise CanaryError(f"cannot read alerts from Prometheus at {prometheus_url}: {exc}") from None
    return sorted({a["labels"]["alertname"] for a in alerts
                   if a.get("state") == "firing" and a["labels"].get("alertname") in CANARY_ALERTS
                   and a["labels"].get("model") == model})


def soak(prometheus_url: str, model: str, seconds: float, every: float = 30.0) -> list[str]:
    """Watch the canary for `seconds`: the alerts as soon as one fires, or [] when the time is up."""
    deadline = time.monotonic() + seconds
    while True:
        firing = firing_canary_alerts(prometheus_url, model)
        if firing or time.monotonic() >= deadline:
            return firing
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
