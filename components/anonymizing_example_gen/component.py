"""AnonymizingExampleGen: a FileBasedExampleGen whose executor applies the privacy policy while reading.

Its parameters (stored in MLMD) are the policy and the sequence settings, never the key: the
executor loads the key from the environment variable or secret file the policy names.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.types.standard_component_specs import EXAMPLES_KEY, FileBasedExampleGenSpec
from tfx.types.channel import Channel

from components.anonymizing_example_gen.executor import (
    INPUT_PATTERN_TEMPLATES_KEY,
    PRIVACY_POLICY_KEY,
    SEQUENCE_FEATURES_KEY,
    Executor,
    feature_kinds,
)
from components.anonymizing_example_gen.sequence_features import SequenceFeaturesConfig
from privacy.policy import PrivacyPolicy


class AnonymizingExampleGenSpec(FileBasedExampleGenSpec):
    PARAMETERS = {
        **FileBasedExampleGenSpec.PARAMETERS,
        PRIVACY_POLICY_KEY: ExecutionParameter(type=str),
        SEQUENCE_FEATURES_KEY: ExecutionParameter(type=str, optional=True),
        INPUT_PATTERN_TEMPLATES_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS: dict = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class AnonymizingExampleGen(FileBasedExampleGen):
    """Raw CSV with personal data in, anonymized tf.Examples out (output `examples`).

    Besides the usual `span`, `version` and `input_fingerprint`, the Examples artifact carries:
    input_sha256, input_file_sha256, input_files, rows_in, rows_out, rows_suppressed,
    privacy_policy, privacy_policy_sha256, pseudonym_key_is_demo, pseudonym_key_source,
    pseudonym_key_id, k_anonymity_k/_groups/_small_groups (if configured) and, with sequence
    features, sequence_features, context_rows, context_sha256, context_file_sha256.
    """

    SPEC_CLASS = AnonymizingExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        input_base: str,
        privacy_policy: PrivacyPolicy | Mapping[str, Any],
        sequence_features: SequenceFeaturesConfig | Mapping[str, Any] | None = None,
        input_config: Optional[example_gen_pb2.Input] = None,
        output_config: Optional[example_gen_pb2.Output] = None,
        range_config: Optional[range_config_pb2.RangeConfig] = None,
    ) -> None:
        """
        Args:
          input_base: folder of the raw CSV files (for the fraud simulator: its --out folder).
          privacy_policy: the `privacy:` section of the use case's config.
          sequence_features: the card-history settings, or None for no history features.
          input_config: input splits, e.g. one split with pattern 'span-{SPAN:4}/*.csv'.
          output_config: output splits (default train:2, eval:1 hash buckets).
          range_config: which span to read (default: the latest).
        """
        policy = _model(PrivacyPolicy, privacy_policy)
        sequence = _model(SequenceFeaturesConfig, sequence_features) if sequence_features is not None else None
        feature_kinds(policy, sequence)  # names every inconsistency now, not at run time
        input_config = input_config or example_gen_utils.make_default_input_config()
        output_config = output_config or example_gen_utils.make_default_output_config(input_config)
        if sequence is not None and sequence.lookback_spans:
            _check_lookback_patterns(input_config)
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
            examples=Channel(type=standard_artifacts.Examples),
        )
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)


def _model(cls: type, value: Any) -> Any:
    return value if isinstance(value, cls) else cls.model_validate(value)


def _check_lookback_patterns(input_config: example_gen_pb2.Input) -> None:
    for split in input_config.splits:
        is_span, is_date, is_version = example_gen_utils.verify_split_pattern_specs(split)
        if not (is_span or is_date) or is_version:
            raise ValueError(
                f"sequence_features.lookback_spans needs input patterns with {{SPAN}} (or a date spec) and no "
                f"{{VERSION}}, e.g. 'span-{{SPAN:4}}/*.csv'; split {split.name!r} has {split.pattern!r}"
            )
