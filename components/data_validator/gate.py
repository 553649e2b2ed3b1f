"""The data gate's judgement, on TFDV protos alone: drift comparators from thresholds, validation, and
one readable line per anomaly (testable without TFX)."""
from __future__ import annotations

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from errors import EsteiraError


class DataAnomaliesError(EsteiraError, RuntimeError):
    """The data broke its schema or drifted past a threshold; the message lists each anomaly."""


def is_categorical(feature: schema_pb2.Feature) -> bool:
    """Strings, and integers the schema marks as categorical, are compared by value shares."""
    return feature.type == schema_pb2.BYTES or (
        feature.type == schema_pb2.INT and feature.int_domain.is_categorical)


def with_drift_comparators(schema: schema_pb2.Schema, categorical_threshold: float | None,
                           numeric_threshold: float | None, skip: frozenset[str] = frozenset()
                           ) -> schema_pb2.Schema:
    """A copy of ``schema`` whose features carry TFDV drift comparators: L-infinity distance for
    categorical features, Jensen-Shannon divergence for numeric ones (None leaves a kind unchecked,
    ``skip`` names features that move by design, such as timestamps)."""
    result = schema_pb2.Schema()
    result.CopyFrom(schema)
    for feature in result.feature:
        feature.ClearField("drift_comparator")
        if feature.name in skip:
            continue
        if is_categorical(feature):
            if categorical_threshold:
                feature.drift_comparator.infinity_norm.threshold = categorical_threshold
        elif numeric_threshold:
            feature.drift_comparator.jensen_shannon_divergence.threshold = numeric_threshold
    return result


def validate(statistics: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema,
             previous_statistics: statistics_pb2.DatasetFeatureStatisticsList | None = None
             ) -> anomalies_pb2.Anomalies:
    """Schema anomalies, plus drift against ``previous_statistics`` where the schema has comparators."""
    return tfdv.validate_statistics(statistics=statistics, schema=schema,
                                    previous_statistics=previous_statistics)


def describe(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One line per anomaly: the feature, TFDV's short description and its detail."""
    lines = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        details = "; ".join(reason.description for reason in info.reason if reason.description)
        lines.append(f"feature '{name}': {info.short_description or 'anomaly'}"
                     + (f" ({details})" if details else ""))
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        details = "; ".join(reason.description for reason in info.reason if reason.description)
        lines.append(f"dataset: {info.short_description or 'anomaly'}" + (f" ({details})" if details else ""))
    return lines


def gate_message(lines_by_split: dict[str, list[str]]) -> str:
    """The single failure message: every anomaly of every split, and the two ways forward."""
    count = sum(len(lines) for lines in lines_by_split.values())
    body = "\n".join(f"  [{split}] {line}" for split, lines in lines_by_split.items() for line in lines)
    return (f"data validation found {count} anomal{'y' if count == 1 else 'ies'}; the pipeline stopped "
            f"before Transform:\n{body}\nFix the data, or curate the schema (`esteira schema freeze`, then "
            "edit it) or the drift thresholds in the config's validation section; "
            "validation.on_anomaly: warn only records them")
