"""DataValidator: TFX's ExampleValidator plus span-to-span drift and a blocking mode.

TFX 1.21's ExampleValidator takes only ``statistics`` and ``schema`` (its executor documents a
previous-span input but never passes it to TFDV), so drift needs this thin component. It writes the
same ``ExampleAnomalies`` artifact (``Split-<name>/SchemaDiff.pb`` and a per-split ``blessed``).
"""

import json
import os

from absl import logging
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, ExampleStatistics, Schema
from tfx.utils import io_utils, writer_utils

from components.data_validator import gate

ANOMALIES_FILE = "SchemaDiff.pb"  # the name TFX's ExampleValidator writes, so its readers work unchanged
ON_ANOMALY = ("fail", "warn")


@component
def DataValidator(
    statistics: InputArtifact[ExampleStatistics],
    schema: InputArtifact[Schema],
    anomalies: OutputArtifact[ExampleAnomalies],
    previous_statistics: InputArtifact[ExampleStatistics] = None,
    on_anomaly: Parameter[str] = "warn",
    categorical_drift_threshold: Parameter[float] = 0.0,
    numeric_drift_threshold: Parameter[float] = 0.0,
    drift_skip_features: Parameter[str] = "[]",
) -> None:
    """Validate every split against the schema and the previous span; with on_anomaly 'fail', raise
    one error listing each anomaly so nothing downstream (Transform first) runs."""
    if on_anomaly not in ON_ANOMALY:
        raise ValueError(f"on_anomaly must be one of {ON_ANOMALY}, got {on_anomaly!r}")
    base_schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema.uri))
    checked_schema = gate.with_drift_comparators(
        base_schema, categorical_drift_threshold or None, numeric_drift_threshold or None,
        frozenset(json.loads(drift_skip_features)))
    splits = artifact_utils.decode_split_names(statistics.split_names)
    previous_splits = (set(artifact_utils.decode_split_names(previous_statistics.split_names))
                       if previous_statistics is not None else set())
    anomalies.split_names = artifact_utils.encode_split_names(splits)
    anomalies.span = statistics.span
    found: dict[str, list[str]] = {}
    blessed: dict[str, int] = {}
    for split in splits:
        current = stats_artifact_utils.load_statistics(statistics, split).proto()
        previous = (stats_artifact_utils.load_statistics(previous_statistics, split).proto()
                    if split in previous_splits else None)
        result = gate.validate(current, checked_schema, previous)
        writer_utils.write_anomalies(
            os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE), result)
        lines = gate.describe(result)
        blessed[split] = 0 if lines else 1
        if lines:
            found[split] = lines
    anomalies.set_json_value_custom_property("blessed", blessed)
    anomalies.set_int_custom_property("anomaly_count", sum(len(lines) for lines in found.values()))
    anomalies.set_int_custom_property(
        "previous_span", previous_statistics.span if previous_statistics is not None else -1)
    anomalies.set_string_custom_property("on_anomaly", on_anomaly)
    if not found:
        return
    message = gate.gate_message(found)
    if on_anomaly == "fail":
        raise gate.DataAnomaliesError(message)
    logging.warning("%s", message.replace("the pipeline stopped before Transform", "recorded, not blocking"))
