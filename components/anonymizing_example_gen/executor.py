"""Executor of the anonymizing ExampleGen: checks and fingerprints the input, runs the Beam
ingestion, and records on the Examples artifact what was read and how it was anonymized."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from tensorflow.core.example import example_pb2
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.anonymizing_example_gen.encoding import column_kinds, to_example
from components.anonymizing_example_gen.ingest import (
    CONTEXT_ROWS,
    METRICS_NAMESPACE,
    ROWS_IN,
    ROWS_OUT,
    ROWS_SUPPRESSED,
    AnonymizedRows,
    IngestPlan,
)
from components.anonymizing_example_gen.sequence_features import Kind, SequenceFeaturesConfig
from privacy.errors import KAnonymityViolation
from privacy.fingerprint import combined_sha256, sha256_file
from privacy.k_anonymity import KAnonymityReport
from privacy.keys import PseudonymKey, load_key
from privacy.policy import PrivacyPolicy

PRIVACY_POLICY_KEY = "privacy_policy"
SEQUENCE_FEATURES_KEY = "sequence_features"
INPUT_PATTERN_TEMPLATES_KEY = "input_pattern_templates"
_PLANS_KEY = "_esteira_ingest_plans"


class Executor(BaseExampleGenExecutor):
    """A FileBasedExampleGen executor for raw CSV with personal data (TFX's custom-executor extension point)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _AnonymizedCsvToExample

    def _make_beam_pipeline(self) -> beam.Pipeline:
        self._pipeline = super()._make_beam_pipeline()  # kept to read the row counters afterwards
        return self._pipeline

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        policy = PrivacyPolicy.from_json(exec_properties[PRIVACY_POLICY_KEY])
        sequence = sequence_config(exec_properties)
        key = load_key(policy.key) if policy.needs_key else None  # fail before any data is read

        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        templates = json.loads(exec_properties.get(INPUT_PATTERN_TEMPLATES_KEY) or "{}")
        span = int(exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME) or 0)

        plans: dict[str, IngestPlan] = {}
        target_digests: dict[str, str] = {}
        context_digests: dict[str, str] = {}
        for index, split in enumerate(input_config.splits):
            target = _matching_files(os.path.join(input_base, split.pattern))
            context = []
            if sequence is not None and sequence.lookback_spans:
                context = _earlier_span_files(input_base, templates[split.name], span, sequence.lookback_spans)
            for path in target + context:  # deny by default, before anything is read
                policy.check_header(_read_header(path), source=path)
            target_digests.update({_relative(path, input_base): _content_sha256(path) for path in target})
            context_digests.update({_relative(path, input_base): _content_sha256(path) for path in context})
            report_path = None
            if policy.k_anonymity is not None:
                report_path = os.path.join(self._get_tmp_dir(), f"k_anonymity_{index}.json")
            plans[split.pattern] = IngestPlan(policy.canonical_json(), target, context, sequence, report_path)

        super().Do(input_dict, output_dict, {**exec_properties, _PLANS_KEY: plans})

        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        reports = [_read_report(plan, policy) for plan in plans.values() if plan.k_anonymity_report_path]
        violated = [r for r in reports if not r.ok]
        if violated and policy.k_anonymity is not None and policy.k_anonymity.on_violation == "fail":
            for split_name in artifact_utils.decode_split_names(examples.split_names):
                split_uri = artifact_utils.get_split_uri([examples], split_name)
                if fileio.exists(split_uri):
                    fileio.rmtree(split_uri)
            raise KAnonymityViolation(violated[0])

        counts = self._row_counts()
        _record(examples, policy, key, sequence, target_digests, context_digests, counts, reports)

    def _row_counts(self) -> dict[str, int]:
        result = self._pipeline.result
        result.wait_until_finish()
        query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
        totals = {ROWS_IN: 0, ROWS_OUT: 0, ROWS_SUPPRESSED: 0, CONTEXT_ROWS: 0}
        for counter in query["counters"]:
            value = counter.committed if counter.committed is not None else counter.attempted
            totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
        return totals


def sequence_config(exec_properties: dict[str, Any]) -> SequenceFeaturesConfig | None:
    text = exec_properties.get(SEQUENCE_FEATURES_KEY)
    return SequenceFeaturesConfig.model_validate_json(text) if text else None


def feature_kinds(policy: PrivacyPolicy, sequence: SequenceFeaturesConfig | None) -> dict[str, Kind]:
    """Every feature the examples carry: the policy's output columns, then the history lists."""
    kinds = column_kinds(policy.output_columns())
    if sequence is not None:
        kinds.update(sequence.feature_kinds(policy.output_columns()))
    return kinds


class _Encode(beam.DoFn):
    def __init__(self, kinds: dict[str, Kind]) -> None:
        self._kinds = kinds
        self._rows_out = Metrics.counter(METRICS_NAMESPACE, ROWS_OUT)

    def process(self, row: dict[str, Any]):
        self._rows_out.inc()
        yield to_example(row, self._kinds)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(example_pb2.Example)
def _AnonymizedCsvToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    """One input split: read + anonymize (+ k-anonymity, + card histories) -> tf.Examples."""
    plan: IngestPlan = exec_properties[_PLANS_KEY][split_pattern]
    kinds = feature_kinds(plan.policy, plan.sequence)
    return pipeline | "AnonymizedRows" >> AnonymizedRows(plan) | "ToExample" >> beam.ParDo(_Encode(kinds))


def _matching_files(pattern: str) -> list[str]:
    files = sorted(fileio.glob(pattern))
    if not files:
        raise RuntimeError(f"the input pattern {pattern} matches no files; check input_base and input_config")
    return files


def _earlier_span_files(input_base: str, template: str, span: int, lookback: int) -> list[str]:
    """Files of the `lookback` spans before `span`, read only as history context (never emitted)."""
    is_span, is_date, is_version = example_gen_utils.verify_split_pattern_specs(
        example_gen_pb2.Input.Split(name="context", pattern=template)
    )
    files: list[str] = []
    for earlier in range(max(0, span - lookback), span):
        pattern = example_gen_utils.get_pattern_for_span_version(template, is_span, is_date, is_version, earlier, None)
        files.extend(sorted(fileio.glob(os.path.join(input_base, pattern))))
    return files


def _read_header(path: str) -> list[str]:
    with FileSystems.open(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        return next(csv.reader(text), [])


def _content_sha256(path: str) -> str:
    return sha256_file(path, lambda p: FileSystems.open(p, compression_type=CompressionTypes.UNCOMPRESSED))


def _relative(path: str, base: str) -> str:
    return os.path.relpath(path, base) if "://" not in path else path[len(base):].lstrip("/")


def _read_report(plan: IngestPlan, policy: PrivacyPolicy) -> KAnonymityReport:
    assert plan.k_anonymity_report_path and policy.k_anonymity is not None
    with FileSystems.open(plan.k_anonymity_report_path) as stream:
        summary = json.loads(stream.read().decode("utf-8"))
    FileSystems.delete([plan.k_anonymity_report_path])  # generalized values only, but not evidence to keep
    violations = sorted(((tuple(key), n) for key, n in summary["violations"]), key=lambda v: (v[1], repr(v[0])))
    return KAnonymityReport(
        k=summary["k"], quasi_identifiers=tuple(policy.k_anonymity.quasi_identifiers),
        groups=summary["groups"], rows=summary["rows"], violations=tuple(violations),
        unit=f"distinct {policy.k_anonymity.count_distinct}" if policy.k_anonymity.count_distinct else "rows",
    )


def _record(
    examples: types.Artifact,
    policy: PrivacyPolicy,
    key: PseudonymKey | None,
    sequence: SequenceFeaturesConfig | None,
    target_digests: dict[str, str],
    context_digests: dict[str, str],
    counts: dict[str, int],
    reports: list[KAnonymityReport],
) -> None:
    """The evidence a compliance report is built from, as custom properties of the Examples artifact."""
    examples.set_string_custom_property("input_sha256", combined_sha256(target_digests.values()))
    examples.set_string_custom_property("input_file_sha256", json.dumps(target_digests, sort_keys=True))
    examples.set_int_custom_property("input_files", len(target_digests))
    examples.set_int_custom_property("rows_in", counts[ROWS_IN])
    examples.set_int_custom_property("rows_out", counts[ROWS_OUT])
    examples.set_int_custom_property("rows_suppressed", counts[ROWS_SUPPRESSED])
    examples.set_string_custom_property("privacy_policy", policy.canonical_json())
    examples.set_string_custom_property("privacy_policy_sha256", policy.sha256())
    examples.set_int_custom_property("pseudonym_key_is_demo", int(bool(key and key.is_demo)))
    examples.set_string_custom_property("pseudonym_key_source", key.source if key else "none")
    examples.set_string_custom_property("pseudonym_key_id", key.key_id if key else "")
    if policy.k_anonymity is not None:
        examples.set_int_custom_property("k_anonymity_k", policy.k_anonymity.k)
        examples.set_int_custom_property("k_anonymity_groups", sum(r.groups for r in reports))
        examples.set_int_custom_property("k_anonymity_small_groups", sum(len(r.violations) for r in reports))
    if sequence is not None:
        examples.set_string_custom_property("sequence_features", sequence.model_dump_json())
        examples.set_int_custom_property("context_rows", counts[CONTEXT_ROWS])
        if context_digests:
            examples.set_string_custom_property("context_sha256", combined_sha256(context_digests.values()))
            examples.set_string_custom_property("context_file_sha256", json.dumps(context_digests, sort_keys=True))
