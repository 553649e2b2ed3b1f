"""Executor of the anonymizing ExampleGen: checks and fingerprints the input, runs the Beam
ingestion, and records on the Examples artifact what was read and how it was anonymized.

With a time split the input config has two splits, `train` and `eval`, whose span patterns this
executor expands to the windows' span ranges (time_windows.py): the spans are read once, the
features computed once over target and context rows, and the rows divided by their day.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
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

from components.anonymizing_example_gen.card_examples import TimeSplitExamples
from components.anonymizing_example_gen.card_pass import keys_agree
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
from components.anonymizing_example_gen.time_windows import (
    SPLITS,
    SpanCalendar,
    TimeSplitPlan,
    TimeSplitSettings,
    plan_time_split,
    read_manifest_calendar,
    record_properties,
    spans_to_read,
    split_by_window,
    timestamp_calendar,
)
from components.anonymizing_example_gen.window_features import WindowFeaturesConfig
from privacy.data_version import record_data_version
from privacy.errors import KAnonymityViolation
from privacy.fingerprint import combined_sha256, sha256_file
from privacy.k_anonymity import KAnonymityReport
from privacy.keys import PseudonymKey, load_key
from privacy.policy import PrivacyPolicy

PRIVACY_POLICY_KEY = "privacy_policy"
SEQUENCE_FEATURES_KEY = "sequence_features"
INPUT_PATTERN_TEMPLATES_KEY = "input_pattern_templates"
WINDOW_FEATURES_KEY = "window_features"
TIME_SPLIT_KEY = "time_split"
_PLANS_KEY = "_esteira_ingest_plans"
_TIME_PLAN_KEY = "_esteira_time_split_plan"


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
        windows = window_features_config(exec_properties)
        time_settings = time_split_settings(exec_properties)
        key = load_key(policy.key) if policy.needs_key else None  # fail before any data is read

        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        templates = json.loads(exec_properties.get(INPUT_PATTERN_TEMPLATES_KEY) or "{}")
        span = int(exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME) or 0)

        plans: dict[str, IngestPlan] = {}
        target_digests: dict[str, str] = {}
        context_digests: dict[str, str] = {}
        time_plan: TimeSplitPlan | None = None
        if time_settings is not None:
            time_plan, target, context = _time_split_files(input_base, templates, span, time_settings, policy)
            splits = [("time", target, context)]
        else:
            splits = []
            for split in input_config.splits:
                target = _matching_files(os.path.join(input_base, split.pattern))
                context = []
                # one span per day: the windows' reach back (spanned input only), or the card history's
                spanned = any(example_gen_utils.verify_split_pattern_specs(
                    example_gen_pb2.Input.Split(name=split.name, pattern=templates.get(split.name, "")))[:2])
                lookback = max(sequence.lookback_spans if sequence else 0,
                               windows.lookback_days if windows and spanned else 0)
                if lookback:
                    context = _earlier_span_files(input_base, templates[split.name], span, lookback)
                splits.append((split.pattern, target, context))
        for index, (name, target, context) in enumerate(splits):
            for path in target + context:  # deny by default, before anything is read
                policy.check_header(_read_header(path), source=path)
            target_digests.update({_relative(path, input_base): _content_sha256(path) for path in target})
            context_digests.update({_relative(path, input_base): _content_sha256(path) for path in context})
            report_path = None
            if policy.k_anonymity is not None:
                report_path = os.path.join(self._get_tmp_dir(), f"k_anonymity_{index}.json")
            plans[name] = IngestPlan(policy.canonical_json(), target, context, sequence, report_path,
                                     window_features=windows, time_split=time_plan)

        super().Do(input_dict, output_dict, {**exec_properties, _PLANS_KEY: plans, _TIME_PLAN_KEY: time_plan})

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
        record_data_version(examples, input_base)  # the DVC hash of the input folder, when DVC tracks it
        if windows is not None:
            examples.set_string_custom_property("window_features", windows.model_dump_json())
        if time_plan is not None:
            for name, value in record_properties(time_plan, counts).items():
                if isinstance(value, int):
                    examples.set_int_custom_property(name, value)
                else:
                    examples.set_string_custom_property(name, value)

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.PCollection]:
        """A time split reads its spans once and divides the rows by day; otherwise TFX's splitting.

        When the card steps name one card column (the shipped configs), the columnar card pass
        (card_examples.py) writes the examples; otherwise the row-at-a-time steps do.
        """
        time_plan: TimeSplitPlan | None = exec_properties.get(_TIME_PLAN_KEY)
        if time_plan is None:
            return super().GenerateExamplesByBeam(pipeline, exec_properties)
        plan: IngestPlan = exec_properties[_PLANS_KEY]["time"]
        kinds = feature_kinds(plan.policy, plan.sequence, plan.window_features)
        if keys_agree(plan.time_split, plan.window_features, plan.sequence):  # one card pass, columnar
            return pipeline | "TimeSplitExamples" >> TimeSplitExamples(plan, kinds)
        rows = pipeline | "AnonymizedRows" >> AnonymizedRows(plan)
        return {name: split | f"ToExample[{name}]" >> beam.ParDo(_Encode(kinds))
                for name, split in split_by_window(rows, time_plan).items()}

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


def window_features_config(exec_properties: dict[str, Any]) -> WindowFeaturesConfig | None:
    text = exec_properties.get(WINDOW_FEATURES_KEY)
    return WindowFeaturesConfig.model_validate_json(text) if text else None


def time_split_settings(exec_properties: dict[str, Any]) -> TimeSplitSettings | None:
    text = exec_properties.get(TIME_SPLIT_KEY)
    return TimeSplitSettings.model_validate_json(text) if text else None


def feature_kinds(
    policy: PrivacyPolicy, sequence: SequenceFeaturesConfig | None, windows: WindowFeaturesConfig | None = None
) -> dict[str, Kind]:
    """Every feature the examples carry: the policy's output columns, the window features, the history lists."""
    kinds = column_kinds(policy.output_columns())
    if windows is not None:
        kinds.update(windows.feature_kinds(policy.output_columns()))
    if sequence is not None:
        kinds.update(sequence.feature_kinds(policy.output_columns()))
    return kinds


class _Encode(beam.DoFn):
    def __init__(self, kinds: dict[str, Kind]) -> None:
        self._kinds = kinds
        self._rows_out = Metrics.counter(METRICS_NAMESPACE, ROWS_OUT)

    def process(self, row: dict[str, Any]) -> Iterator[example_pb2.Example]:
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
    kinds = feature_kinds(plan.policy, plan.sequence, plan.window_features)
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


def _span_files(input_base: str, template: str, span: int) -> list[str]:
    is_span, is_date, is_version = example_gen_utils.verify_split_pattern_specs(
        example_gen_pb2.Input.Split(name="span", pattern=template))
    pattern = example_gen_utils.get_pattern_for_span_version(template, is_span, is_date, is_version, span, None)
    return sorted(fileio.glob(os.path.join(input_base, pattern)))


def _time_split_files(
    input_base: str, templates: dict[str, str], end_span: int, settings: TimeSplitSettings, policy: PrivacyPolicy
) -> tuple[TimeSplitPlan, list[str], list[str]]:
    """The windows ending on `end_span` and their files: train and eval spans as targets, the rest context.

    Every train and eval span must be present; history and delay spans are read where they exist
    (the config check refuses a history shorter than the label delay).
    """
    if set(templates) != set(SPLITS) or templates["train"] != templates["eval"]:
        raise RuntimeError(f"a time split needs input splits 'train' and 'eval' with one span pattern; got {templates}")
    template = templates["train"]
    calendar = span_calendar(input_base, template, end_span, settings, policy)
    plan = plan_time_split(settings, calendar, end_span)
    target: list[str] = []
    context: list[str] = []
    for span, is_target in spans_to_read(plan):
        files = _span_files(input_base, template, span)
        if is_target and not files:
            raise RuntimeError(f"the time split needs span {span} ({calendar.date_of_span(span)}), but "
                               f"{os.path.join(input_base, template)} matches no file for it; write the span "
                               "or set data.split.end_span so the windows fall inside the data")
        (target if is_target else context).extend(files)
    return plan, target, context


def span_calendar(
    input_base: str, template: str, end_span: int, settings: TimeSplitSettings, policy: PrivacyPolicy
) -> SpanCalendar:
    """The spans' dates: the data's manifest.json, else the earliest span's first row (time_windows.py).
    The Airflow DAG reads the same calendar to pick the span dated on a run's day."""
    return read_manifest_calendar(input_base) or _timestamp_calendar(input_base, template, end_span, settings, policy)


def _timestamp_calendar(
    input_base: str, template: str, end_span: int, settings: TimeSplitSettings, policy: PrivacyPolicy
) -> SpanCalendar:
    """No manifest: date the earliest span present from its first row (spans counted back from `end_span`)."""
    raw_time = next((raw for raw, rule in policy.columns.items()
                     if rule.treatment != "drop" and (getattr(rule, "output", None) or raw) == settings.time), None)
    if raw_time is None:
        raise RuntimeError(f"the time split's time column {settings.time!r} is not an output of the privacy policy")
    earliest = None
    for span in range(end_span, -1, -1):
        files = _span_files(input_base, template, span)
        if not files:
            break
        earliest = (span, files[0])
    if earliest is None:
        raise RuntimeError(f"span {end_span} has no file under {input_base} matching {template}")
    return timestamp_calendar(earliest[0], earliest[1], raw_time)


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
