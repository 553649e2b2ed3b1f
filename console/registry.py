"""The registry's side of a review: registered versions, their aliases and what their runs logged.

Everything here is read from MLflow (the pipeline's MLflow logger wrote it); nothing is recomputed.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracking.errors import TrackingError
from tracking.registry import SERVING_VERSION_TAG, aliases_of

if TYPE_CHECKING:
    from mlflow import MlflowClient

AUC, AUC_PR = "auc", "auc_precision_recall"
EPSILON_METRIC = "training.dp_epsilon"
FINGERPRINT_PARAMS = ("data.input_sha256", "data.input_fingerprint")  # the file hash reads better than TFX's
CURVE_PHASES = ("train", "validation")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in the console's log


class RegistryUnavailable(TrackingError):
    """The MLflow store is missing or unreachable; the message names it and the fix."""


class UnknownVersion(TrackingError):
    """A page asked for a version the registry does not hold; the message lists the ones it does."""


@dataclass(frozen=True)
class VersionFacts:
    """One registered version as a reviewer compares it."""

    version: str
    serving_version: str
    aliases: tuple[str, ...]
    run_id: str
    created_ms: int
    blessed: str
    blessed_reason: str
    auc: float | None
    auc_pr: float | None
    epsilon: float | None
    fingerprint: str | None
    examples_id: int | None
    metrics: dict[str, float] = field(default_factory=dict, repr=False)


def open_client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient for an existing store: a missing sqlite file is an error, never a new empty store."""
    from tracking.store import TrackingTarget, connect

    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise RegistryUnavailable(
                f"no MLflow store at {database}; run the pipeline with tracking enabled first, or pass the "
                "store that holds the registry with --tracking_uri (or MLFLOW_TRACKING_URI)")
    try:
        return connect(TrackingTarget(tracking_uri))
    except TrackingError as error:
        raise RegistryUnavailable(str(error)) from None


def _metric(metrics: dict[str, float], name: str) -> float | None:
    value = metrics.get(name)
    return None if value is None else float(value)


def version_facts(client: MlflowClient, model_name: str) -> list[VersionFacts]:
    """Every registered version of ``model_name``, newest first, with its run's headline figures."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(model_name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models())
        raise RegistryUnavailable(
            f"the registry holds no model {model_name!r} (registered: {', '.join(known) or 'none'}); run the "
            "pipeline so it registers a pushed version, or start the console with the use case that did") from None
    aliases = aliases_of(model)
    facts = []
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if version.run_id is None:
            continue  # registered by hand, without a run: none of the figures below exist
        run = client.get_run(version.run_id)
        metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
        fingerprint = next((params[name] for name in FINGERPRINT_PARAMS if name in params), None)
        examples_id = tags.get("mlmd.examples_id", "")
        facts.append(VersionFacts(
            version=str(version.version), serving_version=version.tags.get(SERVING_VERSION_TAG, ""),
            aliases=tuple(sorted(alias for alias, number in aliases.items() if number == str(version.version))),
            run_id=version.run_id, created_ms=int(version.creation_timestamp or 0),
            blessed=tags.get("blessed", "?"), blessed_reason=tags.get("blessed_reason", ""),
            auc=_metric(metrics, f"eval.{AUC}"), auc_pr=_metric(metrics, f"eval.{AUC_PR}"),
            epsilon=_metric(metrics, EPSILON_METRIC), fingerprint=fingerprint,
            examples_id=int(examples_id) if examples_id.isdigit() else None, metrics=dict(metrics)))
    return sorted(facts, key=lambda f: int(f.version), reverse=True)


def find_version(versions: list[VersionFacts], wanted: str) -> VersionFacts:
    """The version called ``wanted`` (a registered version number or an alias)."""
    for facts in versions:
        if wanted == facts.version or wanted in facts.aliases:
            return facts
    known = ", ".join(f.version for f in sorted(versions, key=lambda f: int(f.version))) or "none"
    raise UnknownVersion(f"no registered version {wanted!r} (versions: {known}; aliases: "
                         f"{', '.join(sorted({a for f in versions for a in f.aliases})) or 'none'}); "
                         "pick one from the versions page")


def evaluation_metrics(client: MlflowClient, run_id: str) -> dict[str, dict[str, dict[str, float]]]:
    """{'candidate'|'baseline'|'diff': {slice ('' = overall): {metric: value}}}, as the run logged it."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = client.download_artifacts(run_id, "evaluation/metrics.json", scratch)
        except Exception:  # noqa: BLE001 - MLflow raises several kinds for a missing artifact
            return {"candidate": {}, "baseline": {}, "diff": {}}
        return json.loads(Path(path).read_text())


def training_curves(client: MlflowClient, facts: VersionFacts) -> dict[str, list[tuple[int, float]]]:
    """{'train.loss': [(epoch, value), ...], 'validation.loss': ...} from the run's metric history."""
    curves = {}
    for name in sorted(facts.metrics):
        if name.split(".", 1)[0] in CURVE_PHASES:
            history = client.get_metric_history(facts.run_id, name)
            curves[name] = [(point.step, point.value) for point in sorted(history, key=lambda p: p.step)]
    return curves


def overall(evaluation: dict[str, Any]) -> dict[str, float]:
    return dict(evaluation.get("candidate", {}).get("", {}))


def slices(evaluation: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {name: values for name, values in evaluation.get("candidate", {}).items() if name}
