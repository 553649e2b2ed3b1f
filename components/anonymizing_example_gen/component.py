"""AnonymizingExampleGen: a FileBasedExampleGen whose executor applies the privacy policy while reading.

Its parameters (stored in MLMD) are the policy, the sequence, window-feature and time-split
settings, never the key: the executor loads the key from the environment variable or secret file
the policy names.

A time split is TFX's own multi-split input: `input_config` has the splits `train` and `eval`
with the same span pattern, TFX's driver resolves the span (the latest, or RangeConfig's), and the
executor expands it to the windows' span ranges that end there. The output config has no hash
split config: the output splits are the input splits.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.types.standard_component_specs import EXAMPLES_KEY, FileBasedExampleGenSpec

from components.anonymizing_example_gen.executor import (
    INPUT_PATTERN_TEMPLATES_KEY,
    PRIVACY_POLICY_KEY,
    SEQUENCE_FEATURES_KEY,
    TIME_SPLIT_KEY,
    WINDOW_FEATURES_KEY,
    Executor,
    feature_kinds,
)
from components.anonymizing_example_gen.sequence_features import SequenceFeaturesConfig
from components.anonymizing_example_gen.time_windows import SPLITS, TimeSplitSettings
from components.anonymizing_example_gen.window_features import WindowFeaturesConfig
from privacy.policy import PrivacyPolicy

_Settings = TypeVar("_Settings", bound=BaseModel)


class AnonymizingExampleGenSpec(FileBasedExampleGenSpec):
    PARAMETERS = {
        **FileBasedExampleGenSpec.PARAMETERS,
        PRIVACY_POLICY_KEY: ExecutionParameter(type=str),
        SEQUENCE_FEATURES_KEY: ExecutionParameter(type=str, optional=True),
        INPUT_PATTERN_TEMPLATES_KEY: ExecutionParameter(type=str, optional=True),
        WINDOW_FEATURES_KEY: ExecutionParameter(type=str, optional=True),
        TIME_SPLIT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS: dict = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class AnonymizingExampleGen(FileBasedExampleGen):
    """Raw CSV with personal data in, anonymized tf.Examples out (output `examples`).

    Besides the usual `span`, `version` and `input_fingerprint`, the Examples artifact carries:
    input_sha256, input_file_sha256, input_files, rows_in, rows_out, rows_suppressed,
    privacy_policy, privacy_policy_sha256, pseudonym_key_is_demo, pseudonym_key_source,
    pseudonym_key_id, k_anonymity_k/_groups/_small_groups (if configured) and, with sequence
    features, sequence_features, context_rows, context_sha256, context_file_sha256; with window
    features, window_features; with a time split, time_split, time_split_origin_seconds,
    <window>_first_span/_last_span/_first_date/_last_date for history, train, delay and eval,
    train_rows, train_frauds, eval_rows, eval_frauds and eval_known_compromised_rows.
    """

    SPEC_CLASS = AnonymizingExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        input_base: str,
        privacy_policy: PrivacyPolicy | Mapping[str, Any],
        sequence_features: SequenceFeaturesConfig | Mapping[str, Any] | None = None,
        input_config: example_gen_pb2.Input | None = None,
        output_config: example_gen_pb2.Output | None = None,
        range_config: range_config_pb2.RangeConfig | None = None,
        window_features: WindowFeaturesConfig | Mapping[str, Any] | None = None,
        time_split: TimeSplitSettings | Mapping[str, Any] | None = None,
    ) -> None:
        """
        Args:
          input_base: folder of the raw CSV files (for the fraud simulator: its --out folder).
          privacy_policy: the `privacy:` section of the use case's config.
          sequence_features: the card-history settings, or None for no history features.
          input_config: input splits, e.g. one split with pattern 'span-{SPAN:4}/*.csv'.
          output_config: output splits (default train:2, eval:1 hash buckets).
          range_config: which span to read (default: the latest); with a time split, the last eval span.
          window_features: the book's customer/terminal window settings, or None for none.
          time_split: train/delay/eval days and the columns the split reads, or None for hash splits;
            needs input splits `train` and `eval` (one span pattern) and no output split config.
        """
        policy = _model(PrivacyPolicy, privacy_policy)
        sequence = _model(SequenceFeaturesConfig, sequence_features) if sequence_features is not None else None
        windows = _model(WindowFeaturesConfig, window_features) if window_features is not None else None
        split = _model(TimeSplitSettings, time_split) if time_split is not None else None
        feature_kinds(policy, sequence, windows)  # names every inconsistency now, not at run time
        input_config = input_config or example_gen_utils.make_default_input_config()
        output_config = output_config or example_gen_utils.make_default_output_config(input_config)
        if split is not None:
            _check_lookback_patterns(input_config, "a time split")
        elif sequence is not None and sequence.lookback_spans:
            _check_lookback_patterns(input_config, "sequence_features.lookback_spans")
        if split is not None:
            split.check_columns(policy.output_columns())
            split = split.model_copy(update={"history_days": max(
                split.history_days, windows.lookback_days if windows else 0,
                sequence.lookback_spans if sequence else 0)})
            _check_time_split_config(input_config, output_config)
        spec = AnonymizingExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            custom_config=None,
            range_config=range_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            privacy_policy=policy.canonical_json(),
            sequence_features=sequence.model_dump_json() if sequence is not None else None,
            input_pattern_templates=json.dumps({s.name: s.pattern for s in input_config.splits}, sort_keys=True),
            window_features=windows.model_dump_json() if windows is not None else None,
            time_split=split.model_dump_json() if split is not None else None,
            examples=Channel(type=standard_artifacts.Examples),
        )
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)


def _model(cls: type[_Settings], value: Any) -> _Settings:
    return value if isinstance(value, cls) else cls.model_validate(value)


def _check_lookback_patterns(input_config: example_gen_pb2.Input, needed_by: str) -> None:
    for split in input_config.splits:
        is_span, is_date, is_version = example_gen_utils.verify_split_pattern_specs(split)
        if not (is_span or is_date) or is_version:
            raise ValueError(
                f"{needed_by} needs input patterns with {{SPAN}} (or a date spec) and no "
                f"{{VERSION}}, e.g. 'span-{{SPAN:4}}/*.csv'; split {split.name!r} has {split.pattern!r}"
            )


def _check_time_split_config(input_config: example_gen_pb2.Input, output_config: example_gen_pb2.Output) -> None:
    names = [split.name for split in input_config.splits]
    if sorted(names) != sorted(SPLITS) or len({split.pattern for split in input_config.splits}) != 1:
        raise ValueError(f"a time split needs input splits {list(SPLITS)} with one span pattern, got {names}")
    if output_config.split_config.splits:
        raise ValueError("a time split divides rows by day: give no output split_config (the output splits "
                         "are the input splits train and eval)")
