"""Which versions to serve, when to (re)load one and when to unload one (TF Serving's ServableVersionPolicy
and AvailabilityPreservingPolicy).

A new version is loaded before an old one is unloaded and the last available version is never unloaded;
a version that failed to load is retried only when its folder's content changes, so a half-written export
that is later completed loads without a restart.
"""
from __future__ import annotations

from collections.abc import Iterable

from tensorflow_serving.config import model_server_config_pb2

from serving.core.source import fingerprint
from serving.core.versions import AVAILABLE, END, LOADING, Model, Version


def aspired_versions(config: model_server_config_pb2.ModelConfig, on_disk: Iterable[int]) -> set[int]:
    policy = config.model_version_policy
    numbers = sorted(on_disk, reverse=True)
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(numbers)
    if choice == "specific":
        return {v for v in policy.specific.versions if v in set(numbers)}
    count = policy.latest.num_versions if choice == "latest" else 1
    return set(numbers[: max(count, 1)])


def needs_load(current: Version | None, path: str) -> bool:
    """Whether an aspired version at ``path`` is to be loaded now, given what is known of it."""
    if current is not None and current.state in (AVAILABLE, LOADING):
        return False
    if current is not None and current.state == END:
        if current.error is None and current.servable is None and current.fingerprint == fingerprint(path):
            return True  # unloaded earlier and aspired again: load again
        if current.error is not None and current.fingerprint == fingerprint(path):
            return False  # failed before and nothing changed since: keep reporting the error
    return True


def to_unload(model: Model, aspired: set[int]) -> list[Version]:
    """Available versions no longer aspired, once every aspired version has settled and one serves
    (availability first: old versions stay until a new one serves). The caller holds the manager's lock."""
    settled = all(
        model.versions.get(v) is not None and model.versions[v].state in (AVAILABLE, END) for v in aspired
    )
    serving_aspired = [v for v in aspired if model.versions.get(v) and model.versions[v].state == AVAILABLE]
    if not settled or not serving_aspired:
        return []
    return [v for v in model.versions.values() if v.state == AVAILABLE and v.number not in aspired]
