"""The running model server's side of a review: what it serves, its labels, live drift and answers."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from serving.client import RestClient, ServingClientError

TIMEOUT_SECONDS = 5.0
DRIFT_METRIC = "esteira_feature_drift_psi"


@dataclass(frozen=True)
class ServerState:
    """Version states as the server reports them, or why it could not be asked."""

    states: dict[str, str] = field(default_factory=dict)  # serving version -> AVAILABLE, LOADING, ...
    problem: str | None = None


def server_state(url: str, model_name: str, token: str | None) -> ServerState:
    try:
        with RestClient(url, token=token, timeout=TIMEOUT_SECONDS, retries=0) as client:
            status = client.status(model_name)
    except ServingClientError as error:
        return ServerState(problem=_problem(url, error))
    return ServerState({str(item["version"]): item.get("state", "?")
                        for item in status.get("model_version_status", [])})


def _problem(url: str, error: ServingClientError) -> str:
    if error.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return (f"the model server at {url} is not reachable ({error.message}); start it with `esteira serve` "
                "or pass its REST address with --server")
    if error.code == "NOT_FOUND":
        return f"the model server at {url} does not serve this model ({error.message}); check its --model_config_file"
    return f"the model server at {url} answered {error.code}: {error.message}"


def version_labels(model_config_file: Path, model_name: str) -> dict[str, int]:
    """The labels the server is configured with (the file `esteira promote` rewrites)."""
    from serving.config import ConfigError, read_model_config

    try:
        config = read_model_config(model_config_file)
    except ConfigError:
        return {}
    for model in config.model_config_list.config:
        if model.name == model_name:
            return dict(model.version_labels)
    return {}


def live_drift(url: str, metrics_path: str, model_name: str, token: str | None) -> dict[str, dict[str, float]]:
    """{serving version: {feature: PSI}} of served inputs against each version's training reference."""
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url.rstrip("/") + metrics_path, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    drift: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == DRIFT_METRIC and sample.labels.get("model") == model_name:
                drift.setdefault(sample.labels["version"], {})[sample.labels["feature"]] = sample.value
    return drift


@dataclass(frozen=True)
class Answer:
    """One version's answer to the prediction form, or the server's refusal."""

    version: str
    score: float | None = None
    raw: Any = None
    problem: str | None = None


def example_from_values(values: dict[str, str], kinds: dict[str, str]) -> bytes:
    """A serialized tf.Example from form text, each value cast to its feature's kind; ValueError names a bad one.

    A list feature (e.g. a transaction history) is written as values separated by commas.
    """
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for name, text in values.items():
        kind, feature = kinds[name], example.features.feature[name]
        items = [item.strip() for item in text.split(",")] if text.strip() else []
        for item in items:
            try:
                if kind == "float_list":
                    feature.float_list.value.append(float(item))
                elif kind == "int64_list":
                    feature.int64_list.value.append(int(item))
                else:
                    feature.bytes_list.value.append(item.encode("utf-8"))
            except ValueError:
                wanted = "a number" if kind == "float_list" else "a whole number"
                raise ValueError(f"feature {name!r}: {item!r} is not {wanted}; correct it and send again") from None
        if not items:  # keep the feature's kind even when the list is empty
            getattr(feature, kind).SetInParent()
    return example.SerializeToString()


def predict(url: str, model_name: str, version: str, record: bytes, token: str | None) -> Answer:
    """The server's answer of ``version`` to one serialized example on its default signature."""
    instance = {"b64": base64.b64encode(record).decode("ascii")}
    try:
        with RestClient(url, token=token, timeout=TIMEOUT_SECONDS, retries=0) as client:
            predictions = client.predict(model_name, instances=[instance], version=int(version))
    except ServingClientError as error:
        return Answer(version, problem=_problem(url, error))
    return Answer(version, _score(predictions[0]), predictions[0])


def _score(row: Any) -> float | None:
    """The positive-class score: 'probability' when named, else the last value of the first output."""
    if isinstance(row, dict):
        row = row.get("probability", next(iter(row.values()), None))
    while isinstance(row, list) and row:
        row = row[-1]
    return float(row) if isinstance(row, (int, float)) else None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def feature_kinds(record: bytes, label_key: str | None) -> dict[str, tuple[str, str]]:
    """{feature: (kind, its values as text)} of one eval row, label left out: the form's fields and defaults."""
    from tensorflow.core.example import example_pb2

    fields = {}
    for name, feature in sorted(example_pb2.Example.FromString(record).features.feature.items()):
        if name != label_key:
            kind = feature.WhichOneof("kind") or "float_list"
            fields[name] = (kind, ", ".join(_text(value) for value in getattr(feature, kind).value))
    return fields
