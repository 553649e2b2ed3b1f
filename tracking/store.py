"""Which MLflow store a run goes to, and a client that fails fast when that store is unreachable.

The embedded default is a sqlite tracking store with a local artifact folder under the pipeline
root, so a laptop run needs no server; ``MLFLOW_TRACKING_URI`` or ``tracking.uri`` points the same
code at a team ``mlflow server``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tracking.errors import TrackingUnavailable

if TYPE_CHECKING:
    from mlflow import MlflowClient

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

LOCAL_FOLDER = "mlflow"
HEALTH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class TrackingTarget:
    """A tracking URI, plus the artifact folder new experiments get when the store is local."""

    uri: str
    artifact_location: str | None = None

    @property
    def is_remote(self) -> bool:
        return self.uri.startswith(("http://", "https://"))


def local_target(folder: Path) -> TrackingTarget:
    """The embedded store: ``<folder>/mlflow.db`` and ``<folder>/artifacts``."""
    folder = folder.resolve()
    return TrackingTarget(uri=f"sqlite:///{folder / 'mlflow.db'}",
                          artifact_location=(folder / "artifacts").as_uri())


def resolve_target(configured_uri: str | None, local_folder: Path) -> TrackingTarget:
    """MLFLOW_TRACKING_URI, else the configured URI, else the embedded store in ``local_folder``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured_uri
    if not uri:
        return local_target(local_folder)
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        return TrackingTarget(uri=uri, artifact_location=(folder / "artifacts").resolve().as_uri())
    return TrackingTarget(uri=uri)


def check_reachable(target: TrackingTarget) -> None:
    """One quick health probe, so an unreachable server fails in seconds, not after MLflow's retries."""
    if not target.is_remote:
        if target.uri.startswith("sqlite:///"):
            Path(target.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return
    import httpx

    try:
        response = httpx.get(f"{target.uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        raise TrackingUnavailable(target.uri, f"{type(error).__name__}: {error}") from None
    if response.status_code != 200:
        raise TrackingUnavailable(target.uri, f"GET /health answered HTTP {response.status_code}")


def connect(target: TrackingTarget) -> MlflowClient:  # mlflow is imported lazily: it takes a second
    """An MlflowClient for the target after a health probe; registry calls go to the same URI."""
    check_reachable(target)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=target.uri, registry_uri=target.uri)


def experiment_id(client: MlflowClient, target: TrackingTarget, name: str) -> str:
    """The experiment's id, creating it (with the local artifact folder, if any) the first time."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=target.artifact_location)
