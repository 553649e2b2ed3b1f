"""The data gate's judgement on TFDV statistics: schema anomalies, span-to-span drift, one message."""
from __future__ import annotations

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tfx.types.standard_artifacts import ExampleStatistics

from components.data_validator.gate import describe, gate_message, validate, with_drift_comparators
from components.data_validator.previous_span import previous_span


def statistics(channel: list[str], amount: list[float]):
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame({"channel": channel, "amount": amount}))


@pytest.fixture(scope="module")
def span_one():
    return statistics(["web"] * 50 + ["pos"] * 50, [float(i % 20) for i in range(100)])


def test_same_data_has_no_anomaly(span_one) -> None:
    schema = tfdv.infer_schema(span_one)
    assert describe(validate(span_one, with_drift_comparators(schema, 0.1, 0.1), span_one)) == []


def test_unknown_category_is_named(span_one) -> None:
    schema = tfdv.infer_schema(span_one)
    lines = describe(validate(statistics(["web"] * 99 + ["atm"], [1.0] * 100), schema))
    assert len(lines) == 1 and lines[0].startswith("feature 'channel': Unexpected string values")
    assert "atm" in lines[0]


def test_drift_is_found_only_when_a_threshold_is_set(span_one) -> None:
    schema = tfdv.infer_schema(span_one)
    span_two = statistics(["web"] * 90 + ["pos"] * 10, [float(100 + i % 20) for i in range(100)])
    assert describe(validate(span_two, with_drift_comparators(schema, None, None), span_one)) == []
    categorical = describe(validate(span_two, with_drift_comparators(schema, 0.1, None), span_one))
    assert len(categorical) == 1
    assert "channel" in categorical[0] and "Linfty distance" in categorical[0] and "0.4" in categorical[0]
    numeric = describe(validate(span_two, with_drift_comparators(schema, None, 0.1), span_one))
    assert len(numeric) == 1 and numeric[0].startswith("feature 'amount': High approximate Jensen-Shannon")


def test_comparators_follow_the_feature_kind(span_one) -> None:
    schema = with_drift_comparators(tfdv.infer_schema(span_one), 0.2, 0.3)
    features = {feature.name: feature for feature in schema.feature}
    assert features["channel"].drift_comparator.infinity_norm.threshold == 0.2
    assert features["amount"].drift_comparator.jensen_shannon_divergence.threshold == 0.3
    skipped = with_drift_comparators(tfdv.infer_schema(span_one), 0.2, 0.3, skip=frozenset({"amount"}))
    assert not next(f for f in skipped.feature if f.name == "amount").HasField("drift_comparator")


def test_gate_message_lists_every_anomaly_per_split() -> None:
    message = gate_message({"train": ["feature 'a': x"], "eval": ["feature 'a': x", "feature 'b': y"]})
    assert message.startswith("data validation found 3 anomalies; the pipeline stopped before Transform:")
    assert "  [train] feature 'a': x\n  [eval] feature 'a': x\n  [eval] feature 'b': y\n" in message


def test_previous_span_is_the_newest_artifact_of_the_span_below() -> None:
    def artifact(artifact_id: int, span: int) -> ExampleStatistics:
        made = ExampleStatistics()
        made.id, made.span = artifact_id, span
        return made

    history = [artifact(1, 1), artifact(2, 2), artifact(3, 2), artifact(4, 3), artifact(5, 3)]
    assert [a.id for a in previous_span(history)] == [3]
    assert previous_span([artifact(1, 5), artifact(2, 5)]) == []
    assert [a.id for a in previous_span([artifact(7, 0), artifact(9, 0), artifact(8, 0)])] == [8]  # no spans
    assert previous_span([]) == []
