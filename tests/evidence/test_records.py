"""The components' records read back from MLMD artifact protos, as the run report and the MLflow logger see them."""
from __future__ import annotations

import json

from ml_metadata.proto import metadata_store_pb2 as mpb

from evidence import records


def artifact(**properties: int | float | str) -> mpb.Artifact:
    made = mpb.Artifact()
    for name, value in properties.items():
        field = {int: "int_value", float: "double_value", str: "string_value"}[type(value)]
        setattr(made.custom_properties[name], field, value)
    return made


def test_the_push_record_says_whether_which_version_and_where() -> None:
    pushed = records.PushRecord.of(artifact(pushed=1, pushed_version="17", pushed_destination="/serving/17"))
    assert pushed == records.PushRecord(pushed=True, reason="", version="17", destination="/serving/17")
    refused = records.PushRecord.of(artifact(pushed=0, push_reason="identical to the served version 16"))
    assert not refused.pushed and refused.reason == "identical to the served version 16" and refused.version == ""


def test_the_training_record_is_the_trainers_properties_without_their_prefix() -> None:
    model = artifact(training_steps=300, training_dp_epsilon=1.5, training_strategy="mirrored", tfx_version="1.21")
    assert records.training_record(model) == {"steps": 300, "dp_epsilon": 1.5, "strategy": "mirrored"}


def test_a_blessing_counts_only_when_recorded_as_one() -> None:
    assert records.blessed(artifact(blessed=1))
    assert not records.blessed(artifact(blessed=0))
    assert not records.blessed(artifact())


def test_a_hash_split_has_no_time_split_and_a_time_split_keeps_its_windows() -> None:
    assert records.time_split(artifact(train_rows=10)) == {}
    examples = artifact(time_split="out_of_time", train_rows=10, eval_first_date="2026-01-31", unrelated=3)
    assert records.time_split(examples) == {"time_split": "out_of_time", "train_rows": 10,
                                            "eval_first_date": "2026-01-31"}


def test_the_optimization_table_comes_with_its_publish_reason() -> None:
    optimized = artifact(optimization_report=json.dumps({"rows": [{"variant": "int8"}]}),
                         publish_reason="int8 within the accuracy gate")
    assert records.optimization(optimized) == {"rows": [{"variant": "int8"}],
                                               "publish_reason": "int8 within the accuracy gate"}
    assert records.optimization(artifact()) == {"publish_reason": ""}


def test_the_span_is_a_custom_property_or_an_older_property() -> None:
    assert records.span(artifact(span=3)) == 3
    older = mpb.Artifact()
    older.properties["span"].int_value = 2
    assert records.span(older) == 2
    assert records.span(mpb.Artifact()) is None
