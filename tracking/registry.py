"""Registered model versions of pushed serving versions, and the champion/challenger aliases.

``challenger`` marks the newest blessed version; ``champion`` moves only by promote and rollback.
The champion's past versions are kept as a registered-model tag, so rollback works from any
machine that reaches the registry, not only the one that promoted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracking.errors import RegistryError
from tracking.run_record import Registration

SERVING_VERSION_TAG = "serving_version"
CHAMPION_HISTORY_TAG = "esteira.champion_history"
CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_ARTIFACT_FOLDER = "serving_models"
# The model server's labels follow the registry aliases.
LABEL_OF_ALIAS = {CHAMPION: "stable", CHALLENGER: "canary"}

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel


def registered_version_for(client: MlflowClient, model_name: str, serving_version: str) -> ModelVersion | None:
    """The registered version holding ``serving_version``, if it was registered already."""
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if version.tags.get(SERVING_VERSION_TAG) == serving_version:
            return version
    return None


def register_version(client: MlflowClient, run_id: str, run_artifact_uri: str, registration: Registration) -> str:
    """Upload the pushed SavedModel to the run, register it (once) and make it the challenger."""
    from mlflow.exceptions import MlflowException

    name, serving_version = registration.model_name, registration.serving_version
    existing = registered_version_for(client, name, serving_version)
    if existing is not None:
        return str(existing.version)
    artifact_path = f"{MODEL_ARTIFACT_FOLDER}/{serving_version}"
    client.log_artifacts(run_id, str(registration.saved_model_dir), artifact_path)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Pushed serving versions of this model")
    version = client.create_model_version(name, source=f"{run_artifact_uri}/{artifact_path}", run_id=run_id,
                                          tags={SERVING_VERSION_TAG: serving_version})
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return str(version.version)


@dataclass(frozen=True)
class ChampionMove:
    """A checked change of the champion alias; nothing is changed until :func:`apply_move`."""

    model_name: str
    before: str | None
    after: str
    history: list[str]
    labels: dict[str, int]


def _registered_model(client: MlflowClient, name: str) -> RegisteredModel:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        known = sorted(model.name for model in client.search_registered_models())
        raise RegistryError(f"no registered model {name!r} (registered: {', '.join(known) or 'none'}); "
                            "check --model or the tracking URI") from None


def _serving_version(client: MlflowClient, name: str, version: str) -> int:
    from mlflow.exceptions import MlflowException

    try:
        model_version = client.get_model_version(name, version)
    except MlflowException:
        known = sorted((str(v.version) for v in client.search_model_versions(f"name = '{name}'")), key=int)
        raise RegistryError(f"model {name!r} has no version {version!r} (versions: {', '.join(known) or 'none'}); "
                            "pass one of them to --version") from None
    serving = model_version.tags.get(SERVING_VERSION_TAG, "")
    if not serving.isdigit():
        raise RegistryError(f"version {version} of {name!r} has no {SERVING_VERSION_TAG} tag, so no server "
                            "label can point at it; register versions through the pipeline")
    return int(serving)


def aliases_of(model: RegisteredModel) -> dict[str, str]:
    """Alias → version, versions as strings (MLflow hands them back as ints or strings by store)."""
    return {alias: str(version) for alias, version in model.aliases.items()}


def _history(model: RegisteredModel) -> list[str]:
    history = json.loads(model.tags.get(CHAMPION_HISTORY_TAG, "[]"))
    champion = aliases_of(model).get(CHAMPION)
    if champion is not None and (not history or history[-1] != champion):
        history.append(champion)  # the alias was set by hand; keep it as the last champion
    return history


def _labels(client: MlflowClient, name: str, aliases: dict[str, str]) -> dict[str, int]:
    return {LABEL_OF_ALIAS[alias]: _serving_version(client, name, version)
            for alias, version in aliases.items() if alias in LABEL_OF_ALIAS}


def plan_promote(client: MlflowClient, name: str, version: str) -> ChampionMove:
    """Champion → ``version``; stable follows it, canary stays on the challenger."""
    model = _registered_model(client, name)
    _serving_version(client, name, str(version))
    history = _history(model)
    aliases = {**aliases_of(model), CHAMPION: str(version)}
    return ChampionMove(name, aliases_of(model).get(CHAMPION), str(version), [*history, str(version)],
                        _labels(client, name, aliases))


def plan_rollback(client: MlflowClient, name: str) -> ChampionMove:
    """Champion → the champion before the current one."""
    model = _registered_model(client, name)
    history = _history(model)
    if len(history) < 2:
        current = history[-1] if history else "none"
        raise RegistryError(f"model {name!r} has no previous champion to roll back to (champion: {current}); "
                            "promote a version with `esteira promote --model NAME --version V`")
    previous = history[-2]
    aliases = {**aliases_of(model), CHAMPION: previous}
    return ChampionMove(name, aliases_of(model).get(CHAMPION), previous, history[:-1], _labels(client, name, aliases))


def apply_move(client: MlflowClient, move: ChampionMove) -> None:
    client.set_registered_model_alias(move.model_name, CHAMPION, move.after)
    client.set_registered_model_tag(move.model_name, CHAMPION_HISTORY_TAG, json.dumps(move.history))
