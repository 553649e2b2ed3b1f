"""What the components record on their output artifacts, read back as plain values: the ExampleGen's span
and time split, the data gate's anomalies, the training record on the Model, a blessing's verdict and
measurements (the Evaluator's, the ModelValidator's), the ModelOptimizer's table and the Pusher's push record.

The run report, the deploy gate, the governance reports and the MLflow logger read these records here,
so each property has one reading. The arguments are MLMD's own artifact protos (a TFX artifact hands its
own over as ``artifact.mlmd_artifact``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as mpb

TRAINING_PREFIX = "training_"  # the recording Trainer's properties on the Model artifact
_SCALARS = ("int_value", "double_value", "string_value")
_TIME_SPLIT_PROPERTIES = ("time_split", "train_rows", "train_frauds", "eval_rows", "eval_frauds",
                          "eval_known_compromised_rows")


def value(properties: Any, name: str, default: Any = None) -> Any:
    """One property's value, whatever its kind; ``default`` when it is not recorded."""
    if name not in properties:
        return default
    item = properties[name]
    kind = item.WhichOneof("value")
    return getattr(item, kind) if kind else default


def span(artifact: mpb.Artifact) -> int | None:
    """ExampleGen records the span as a custom property (older TFX: a property)."""
    return value(artifact.custom_properties, "span", value(artifact.properties, "span"))


def scalars(artifact: mpb.Artifact, prefix: str = "") -> dict[str, Any]:
    """The numbers and strings among the custom properties named ``prefix...``, the prefix removed."""
    return {name.removeprefix(prefix): value(artifact.custom_properties, name)
            for name in sorted(artifact.custom_properties) if name.startswith(prefix)
            and artifact.custom_properties[name].WhichOneof("value") in _SCALARS}


def training_record(model: mpb.Artifact) -> dict[str, Any]:
    """Steps, epochs, strategy, seed, DP accounting, ... as the recording Trainer put them on the Model."""
    return scalars(model, TRAINING_PREFIX)


def blessed(blessing: mpb.Artifact) -> bool:
    """A ModelBlessing's (or InfraBlessing's) verdict: ``blessed`` is 1."""
    return value(blessing.custom_properties, "blessed", 0) == 1


@dataclass(frozen=True)
class PushRecord:
    """What the Pusher recorded: whether it published, why (not), and the version and where it went."""

    pushed: bool
    reason: str
    version: str
    destination: str

    @classmethod
    def of(cls, pushed_model: mpb.Artifact) -> PushRecord:
        properties = pushed_model.custom_properties
        return cls(pushed=value(properties, "pushed", 0) == 1, reason=str(value(properties, "push_reason", "")),
                   version=str(value(properties, "pushed_version", "")),
                   destination=str(value(properties, "pushed_destination", "")))


def time_split(examples: mpb.Artifact) -> dict[str, int | str]:
    """The time split's windows and counts as the anonymizing ExampleGen recorded them (empty: hash split)."""
    properties = examples.custom_properties
    if "time_split" not in properties:
        return {}
    names = [*_TIME_SPLIT_PROPERTIES, *(f"{window}_{edge}_{what}" for window in ("history", "train", "delay", "eval")
                                        for edge in ("first", "last") for what in ("span", "date"))]
    return {name: value(properties, name) for name in names if name in properties}


def optimization(optimized_model: mpb.Artifact) -> dict[str, Any]:
    """The ModelOptimizer's table (optimization.json's content) and its publish reason."""
    properties = optimized_model.custom_properties
    report = json.loads(value(properties, "optimization_report", "{}"))
    return {**report, "publish_reason": value(properties, "publish_reason", "")}


def anomalies_summary(uri: str) -> dict[str, dict[str, str]]:
    """{split: {feature: description}} of the data gate's anomalies (ExampleAnomalies; empty dicts: none)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    summary: dict[str, dict[str, str]] = {}
    for split in sorted(Path(uri).glob("Split-*")):
        anomalies = anomalies_pb2.Anomalies()
        if (split / "SchemaDiff.pb").is_file():
            anomalies.ParseFromString((split / "SchemaDiff.pb").read_bytes())
        summary[split.name.removeprefix("Split-")] = {
            feature: info.description or info.short_description
            for feature, info in sorted(anomalies.anomaly_info.items())}
    return summary
