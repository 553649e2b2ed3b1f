"""Evidence for the governance reports, gathered from MLMD and handed to the renderers.

The LGPD report of a pushed version (privacy/compliance.py) and the drift report between two
versions or spans (evidence/drift_report.py) are built from what the pipeline recorded: lineage,
the ingestion records on the Examples artifact, the training record on the Model artifact, the
gates' values and thresholds, and the serving access audit logs. Nothing here re-derives a fact
that MLMD already holds.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2 as mpb
from tensorflow_metadata.proto.v0 import statistics_pb2

from evidence import evaluation, lineage, records
from evidence.drift_report import DriftReport, Side, feature_drift, prediction_shift
from evidence.fairness import read_fairness
from evidence.predictions import model_directory, predict_scores, serialized_examples
from privacy.access import iso_utc, summarize_access
from privacy.compliance import ComplianceReport, Gate
from privacy.contested_decisions import tally

REPORT_ARTIFACT = "esteira.GovernanceReport"
ACTOR_PROPERTY = "run_actor"
DRIFT_SPLIT = "train"


# ---- finding artifacts --------------------------------------------------------------------------------

def find_pushed(store: mlmd.MetadataStore, version: str) -> mpb.Artifact:
    """The PushedModel that published ``version``; a clear error when MLMD has no lineage for it."""
    pushed = lineage.pushed_models(store)
    for artifact in reversed(pushed):
        if records.value(artifact.custom_properties, "pushed_version") == str(version):
            return artifact
    known = ", ".join(records.value(a.custom_properties, "pushed_version", "?") for a in pushed) or "none"
    raise lineage.LineageError(
        f"version {version} has no lineage in this metadata store (pushed versions here: {known}); "
        "pass a version this pipeline pushed, or the --config whose metadata_path recorded it")


def previous_pushed(store: mlmd.MetadataStore, pushed: mpb.Artifact) -> mpb.Artifact | None:
    """The version pushed before ``pushed`` (None for the first version)."""
    version = records.value(pushed.custom_properties, "pushed_version")
    earlier = [a for a in lineage.pushed_models(store)
               if a.id < pushed.id and records.value(a.custom_properties, "pushed_version") != version]
    return earlier[-1] if earlier else None


def statistics_of(store: mlmd.MetadataStore, examples: mpb.Artifact) -> mpb.Artifact:
    """The ExampleStatistics StatisticsGen computed on ``examples``."""
    for event in store.get_events_by_artifact_ids([examples.id]):
        if event.type != mpb.Event.INPUT:
            continue
        for artifact in lineage.output_artifacts(store, event.execution_id, "statistics"):
            if lineage.artifact_type(store, artifact) == "ExampleStatistics":
                return artifact
    raise lineage.LineageError(f"no statistics were computed on the Examples artifact {examples.id}")


def examples_of_span(store: mlmd.MetadataStore, span: int) -> mpb.Artifact:
    matching = [a for a in store.get_artifacts_by_type("Examples")
                if records.span(a) == span and not _is_transformed(store, a)]
    if not matching:
        spans = sorted({s for a in store.get_artifacts_by_type("Examples") if (s := records.span(a)) is not None})
        raise lineage.LineageError(f"span {span} was never ingested (spans in this metadata store: {spans})")
    return max(matching, key=lambda a: a.id)


def _is_transformed(store: mlmd.MetadataStore, examples: mpb.Artifact) -> bool:
    return lineage.node_name(store, lineage.producer(store, examples.id)) == "Transform"


def newest_examples(store: mlmd.MetadataStore) -> mpb.Artifact:
    raw = [a for a in store.get_artifacts_by_type("Examples") if not _is_transformed(store, a)]
    if not raw:
        raise lineage.LineageError("no Examples artifact in this metadata store; run the pipeline first")
    return max(raw, key=lambda a: a.id)


def split_statistics(statistics: mpb.Artifact, split: str) -> statistics_pb2.DatasetFeatureStatistics:
    path = Path(statistics.uri) / f"Split-{split}" / "FeatureStats.pb"
    if not path.is_file():
        raise lineage.LineageError(f"statistics of split {split!r} missing at {path}")
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(path.read_bytes())
    return stats.datasets[0]


# ---- drift --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriftEnd:
    """One end of a drift comparison: the data's statistics and, when known, the model."""

    label: str
    examples: mpb.Artifact
    pushed: mpb.Artifact | None


def resolve_end(store: mlmd.MetadataStore, reference: str) -> DriftEnd:
    """``span:N`` names an ingested span; anything else a pushed model version."""
    if reference.startswith("span:"):
        try:
            span = int(reference.removeprefix("span:"))
        except ValueError:
            raise lineage.LineageError(f"{reference!r}: expected span:<number>, e.g. span:3") from None
        examples = examples_of_span(store, span)
        return DriftEnd(f"span {span}", examples, None)
    pushed = find_pushed(store, reference)
    examples = lineage.trace_pushed_model(store, pushed).examples
    return DriftEnd(f"version {reference} (span {records.span(examples)})", examples, pushed)


def drift_between(store: mlmd.MetadataStore, model_name: str, start: DriftEnd, end: DriftEnd,
                  excluded: Mapping[str, str] | None = None) -> DriftReport:
    """Feature drift of the two ends' training data and the shift of predicted scores; ``excluded``
    features (name -> reason, see pipeline.config.drift_exclusions) are named in a note, not scored.

    Two versions: both models score the newest eval split. Two spans: the newest pushed model
    scores each span's eval split.
    """
    before, after = (Side(e.label, split_statistics(statistics_of(store, e.examples), DRIFT_SPLIT))
                     for e in (start, end))
    features, notes = feature_drift(before, after, excluded=excluded)
    shift = None
    if start.pushed is not None and end.pushed is not None:
        newest = newest_examples(store)
        rows = serialized_examples(newest)
        source = f"eval split of span {records.span(newest)} (Examples {newest.id})"
        shift = prediction_shift(predict_scores(model_directory(start.pushed), rows),
                                 predict_scores(model_directory(end.pushed), rows),
                                 (start.label, end.label), source)
    else:
        pushed = lineage.pushed_models(store)
        if pushed:
            model_dir = model_directory(pushed[-1])
            version = records.value(pushed[-1].custom_properties, "pushed_version")
            shift = prediction_shift(predict_scores(model_dir, serialized_examples(start.examples)),
                                     predict_scores(model_dir, serialized_examples(end.examples)),
                                     (start.label, end.label), f"version {version} on each span's eval split")
        else:
            notes.append("no pushed model yet: prediction shift not computed")
    return DriftReport(model=model_name, from_side=start.label, to_side=end.label,
                       generated_at=iso_utc(time.time()), features=features, predictions=shift, notes=notes)


# ---- compliance ---------------------------------------------------------------------------------------

def _describe_rule(rule: dict[str, Any]) -> str:
    details = [f"{key} {rule[key]}" for key in ("method", "dtype", "normalize") if rule.get(key)]
    text = rule["treatment"] + (f" ({', '.join(details)})" if details else "")
    return text + (f" → {rule['output']}" if rule.get("output") else "")


def _privacy_facts(examples: mpb.Artifact) -> dict[str, Any] | None:
    properties = examples.custom_properties
    if "privacy_policy" not in properties:
        return None
    policy = json.loads(records.value(properties, "privacy_policy"))
    k_config = policy.get("k_anonymity")
    return {
        "columns": {name: _describe_rule(rule) for name, rule in policy["columns"].items()},
        "policy_sha256": records.value(properties, "privacy_policy_sha256", ""),
        "pseudonym_key_id": records.value(properties, "pseudonym_key_id", ""),
        "pseudonym_key_source": records.value(properties, "pseudonym_key_source", ""),
        "demo_key": bool(records.value(properties, "pseudonym_key_is_demo", 0)),
        "k_anonymity": {
            "k": records.value(properties, "k_anonymity_k"), "quasi_identifiers": k_config["quasi_identifiers"],
            "groups": records.value(properties, "k_anonymity_groups"),
            "small_groups": records.value(properties, "k_anonymity_small_groups"),
            "on_violation": k_config.get("on_violation", ""),
        } if k_config else None,
    }


def _field_facts(examples: mpb.Artifact, governance: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each raw column of the recorded policy with its treatment and its legal basis: its own in
    governance.field_legal_bases, else the processing's governance.legal_basis; a dropped column is not
    processed, so it has none."""
    if "privacy_policy" not in examples.custom_properties:
        return []
    policy = json.loads(records.value(examples.custom_properties, "privacy_policy"))
    declared = governance or {}
    own = declared.get("field_legal_bases") or {}
    fields = []
    for name, rule in policy["columns"].items():
        if rule["treatment"] == "drop":
            basis, source = "not processed: dropped while reading", None
        elif name in own:
            basis, source = own[name], "governance.field_legal_bases"
        else:
            basis = declared.get("legal_basis") or "not declared"
            source = "governance.legal_basis" if declared.get("legal_basis") else None
        fields.append({"column": name, "treatment": _describe_rule(rule), "legal_basis": basis, "source": source})
    return fields


def _fairness_facts(store: mlmd.MetadataStore, blessing: mpb.Artifact) -> list[dict[str, Any]]:
    """The Evaluator's fairness table per protected attribute, with the sentences the reports print."""
    evaluated = lineage.output_artifacts(store, lineage.producer(store, blessing.id), "evaluation")
    if not evaluated:
        return []
    return [table.report_facts() for table in read_fairness(evaluated[0].uri)]


def _date_range(store: mlmd.MetadataStore, examples: mpb.Artifact) -> dict[str, Any] | None:
    """First and last timestamp of the data, from the statistics of the policy's timestamp column."""
    if "privacy_policy" not in examples.custom_properties:
        return None
    policy = json.loads(records.value(examples.custom_properties, "privacy_policy"))
    columns = [rule.get("output") or name for name, rule in policy["columns"].items()
               if rule.get("treatment") == "keep" and rule.get("dtype") == "timestamp"]
    if not columns:
        return None
    statistics = statistics_of(store, examples)
    lows, highs = [], []
    for split in json.loads(records.value(statistics.properties, "split_names", "[]")):
        for feature in split_statistics(statistics, split).features:
            if feature.path.step and feature.path.step[0] == columns[0] and feature.HasField("num_stats"):
                lows.append(feature.num_stats.min)
                highs.append(feature.num_stats.max)
    if not lows:
        return None
    return {"column": columns[0], "first": iso_utc(min(lows)), "last": iso_utc(max(highs))}


def _data_facts(store: mlmd.MetadataStore, examples: mpb.Artifact) -> dict[str, Any]:
    properties = examples.custom_properties
    return {
        "examples_uri": examples.uri,
        "spans": [records.span(examples)],
        "rows_in": records.value(properties, "rows_in"), "rows_out": records.value(properties, "rows_out"),
        "rows_suppressed": records.value(properties, "rows_suppressed"),
        # a time split reads eval rows of cards already known compromised but emits them only as context
        "rows_known_compromised": records.value(properties, "eval_known_compromised_rows"),
        "date_range": _date_range(store, examples),
        "input_sha256": records.value(properties, "input_sha256", ""),
        "input_files": records.value(properties, "input_files"),
        "input_file_sha256": json.loads(records.value(properties, "input_file_sha256", "{}")),
        "context_sha256": records.value(properties, "context_sha256", ""),
        # the input folder's DVC version (privacy/data_version.py): `dvc checkout` of it restores these bytes
        "dvc": {"md5": records.value(properties, "dvc_md5"), "path": records.value(properties, "dvc_path"),
                "file": records.value(properties, "dvc_file"),
                "matches_working_copy": records.value(properties, "dvc_matches_working_copy") == "true"}
        if records.value(properties, "dvc_md5") else None,
    }


def _overall(uri: str) -> tuple[dict[str, float], dict[str, float]]:
    """Overall-slice candidate metrics and their differences to the baseline."""
    found = evaluation.evaluation_metrics(uri)
    return found[evaluation.CANDIDATE].get(evaluation.OVERALL, {}), found[evaluation.DIFF].get(evaluation.OVERALL, {})


def _evaluator_gates(store: mlmd.MetadataStore, blessing: mpb.Artifact) -> list[Gate]:
    evaluator = lineage.producer(store, blessing.id)
    execution = store.get_executions_by_id([evaluator])[0]
    eval_config = json.loads(records.value(execution.custom_properties, "eval_config", "{}") or "{}")
    evaluated = lineage.output_artifacts(store, evaluator, "evaluation")
    if not evaluated:
        return []
    values, diffs = _overall(evaluated[0].uri)
    component = lineage.node_name(store, evaluator)
    gates: list[Gate] = []
    for name, threshold in evaluation.declared_thresholds(eval_config).items():
        bounds = threshold.get("value_threshold")
        if bounds is not None:
            low, high = _number(bounds.get("lower_bound")), _number(bounds.get("upper_bound"))
            value = values.get(name)
            text = " and ".join(filter(None, [f">= {low:g}" if low is not None else "",
                                              f"<= {high:g}" if high is not None else ""]))
            passed = None if value is None else (low is None or value >= low) and (high is None or value <= high)
            gates.append(Gate(component, name, value, text, passed))
        change = threshold.get("change_threshold")
        if change is not None:
            higher = change.get("direction", "HIGHER_IS_BETTER") == "HIGHER_IS_BETTER"
            if name not in diffs:
                gates.append(Gate(component, f"{name} change vs baseline", "no baseline (first blessed model)",
                                  _change_text(change, higher), None))
                continue
            diff = diffs[name]
            baseline = values.get(name, 0.0) - diff
            passed = True
            if "absolute" in change:
                limit = _number(change["absolute"]) or 0.0
                passed &= diff >= limit if higher else diff <= limit
            if "relative" in change and baseline:
                limit = _number(change["relative"]) or 0.0
                passed &= diff / baseline >= limit if higher else diff / baseline <= limit
            gates.append(Gate(component, f"{name} change vs baseline", diff, _change_text(change, higher), passed))
    return gates


def _headline_metrics(store: mlmd.MetadataStore, blessing: mpb.Artifact) -> dict[str, float]:
    """The model card's evaluation figures (overall slice): AUC, AUC-PR and, when reported, the fraud team's
    average precision, Card Precision@k, recall at a false-positive rate and at a daily alert budget."""
    evaluated = lineage.output_artifacts(store, lineage.producer(store, blessing.id), "evaluation")
    if not evaluated:
        return {}
    values, _ = _overall(evaluated[0].uri)
    names = ["auc", "auc_precision_recall", *evaluation.fraud_metric_names(values), "cards_in_smallest_day",
             "example_count"]
    return {name: values[name] for name in names if name in values}


def _number(value: Any) -> float | None:
    """A google.protobuf.DoubleValue as JSON: a bare number (or {"value": x} when written by hand)."""
    return value.get("value", 0.0) if isinstance(value, dict) else value


def _change_text(change: dict[str, Any], higher: bool) -> str:
    sign = ">=" if higher else "<="
    parts = []
    if "absolute" in change:
        parts.append(f"{sign} {_number(change['absolute']):+g} absolute")
    if "relative" in change:
        parts.append(f"{sign} {_number(change['relative']):+g} relative")
    return " and ".join(parts)


def _blessings(store: mlmd.MetadataStore, pusher: int) -> list[dict[str, Any]]:
    """Every blessing the Pusher consumed (the Evaluator's, a model validator's, ...), with its properties."""
    ids = [event.artifact_id for event in store.get_events_by_execution_ids([pusher]) if event.type == mpb.Event.INPUT]
    result = []
    for artifact in store.get_artifacts_by_id(ids):
        kind = lineage.artifact_type(store, artifact)
        if not kind.endswith("Blessing"):
            continue
        properties = {k: v for k, v in records.scalars(artifact).items() if k not in ("tfx_version", "is_external")}
        result.append({"type": kind, "component": lineage.node_name(store, lineage.producer(store, artifact.id)),
                       "blessed": bool(properties.get("blessed", 0)), "properties": properties})
    return result


def _run_facts(store: mlmd.MetadataStore, pusher: int, actor: str | None, pushed: mpb.Artifact) -> dict[str, Any]:
    runs = [c for c in store.get_contexts_by_execution(pusher) if c.type == lineage.RUN_CONTEXT]
    return {"run_id": runs[0].name if runs else "?",
            "ran_at": iso_utc(runs[0].create_time_since_epoch / 1000) if runs else None,
            "actor": actor or recorded_actor(store, pushed) or "not recorded (no governance report ran for it)"}


def recorded_actor(store: mlmd.MetadataStore, pushed: mpb.Artifact) -> str | None:
    """Who ran the pipeline, as the report component recorded it at run time."""
    for event in store.get_events_by_artifact_ids([pushed.id]):
        if event.type != mpb.Event.INPUT:
            continue
        for artifact in lineage.output_artifacts(store, event.execution_id, "report"):
            if ACTOR_PROPERTY in artifact.custom_properties:
                return records.value(artifact.custom_properties, ACTOR_PROPERTY)
    return None


def compliance_report(store: mlmd.MetadataStore, pushed: mpb.Artifact, model_name: str,
                      governance: dict[str, Any] | None, audit_logs: list[Path],
                      actor: str | None = None, no_traffic_by_design: bool = False) -> ComplianceReport:
    """The LGPD report of one pushed version, from its lineage and the access audit logs
    (``no_traffic_by_design``: the caller states the version has served nothing on purpose)."""
    trace = lineage.trace_pushed_model(store, pushed)
    pusher = lineage.producer(store, pushed.id)
    version = records.value(pushed.custom_properties, "pushed_version")
    gates = _evaluator_gates(store, trace.blessing)
    headline = _headline_metrics(store, trace.blessing)
    blessings = _blessings(store, pusher)
    gates += [Gate(b["component"], "blessing", "blessed" if b["blessed"] else "not blessed", "blessed", b["blessed"])
              for b in blessings]
    notes = [] if governance else ["no governance section in the config: legal basis, purpose, controller and "
                                   "retention are not declared"]
    return ComplianceReport(
        model=model_name, version=version, pushed_at=iso_utc(pushed.create_time_since_epoch / 1000),
        destination=records.value(pushed.custom_properties, "pushed_destination", ""),
        generated_at=iso_utc(time.time()), run=_run_facts(store, pusher, actor, pushed),
        data=_data_facts(store, trace.examples), privacy=_privacy_facts(trace.examples),
        training=records.scalars(trace.model, "training_"), gates=gates, blessings=blessings,
        access=summarize_access(audit_logs, model_name, version), governance=governance, notes=notes,
        no_traffic_by_design=no_traffic_by_design, evaluation=headline,
        fields=_field_facts(trace.examples, governance), fairness=_fairness_facts(store, trace.blessing),
        automated_decisions=automated_decisions(
            Path(records.value(pushed.custom_properties, "pushed_destination", "")), blessings,
            (governance or {}).get("contest_audit_log"), model_name, version))


def automated_decisions(version_dir: Path, blessings: list[dict[str, Any]], contest_log: str | None,
                        model_name: str, version: str) -> dict[str, Any]:
    """Art. 20: how the version explains a decision (the method its export declares, the completeness the
    ModelValidator measured on served rows) and how many of its decisions were contested, and their outcomes."""
    from models.common.explain import METADATA_DIR, METADATA_FILE

    try:
        declared = json.loads((version_dir / METADATA_DIR / METADATA_FILE).read_text()).get("explain")
    except (OSError, ValueError):
        declared = None
    measured: dict[str, Any] = next(
        (b["properties"] for b in blessings if "explain_completeness_max_gap" in b["properties"]), {})
    explanation = None if declared is None else {
        "method": declared.get("method"), "quadrature": declared.get("quadrature"), "steps": declared.get("steps"),
        "baseline": declared.get("baseline"), "signature": declared.get("signature"),
        "features": len(declared.get("features", [])),
        "completeness_max_gap": measured.get("explain_completeness_max_gap"),
        "completeness_rows": measured.get("explain_rows")}
    return {"explanation": explanation, "contests": tally(contest_log, model_name, version)}
