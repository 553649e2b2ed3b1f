"""The Beam half of the anonymizing ExampleGen: raw CSV files in, anonymized rows out.

Raw values exist only inside `ReadAnonymizedRows`, which parses and anonymizes each row in the
same step: no PCollection, shuffle or file ever holds a raw row. Everything downstream (the
k-anonymity check, the window features, the time split, the card histories) works on anonymized
rows.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from components.anonymizing_example_gen.card_pass import CardPass, keys_agree
from components.anonymizing_example_gen.sequence_features import AddCardHistory, SequenceFeaturesConfig
from components.anonymizing_example_gen.time_windows import (
    METRICS_NAMESPACE,
    RemoveKnownCompromised,
    TimeSplitPlan,
    tag_window,
)
from components.anonymizing_example_gen.window_features import (
    AddTerminalWindows,
    AddWindowFeatures,
    WindowFeaturesConfig,
)
from privacy.anonymizer import Anonymizer
from privacy.k_anonymity import group_key
from privacy.keys import load_key
from privacy.policy import KAnonymityConfig, PrivacyPolicy

ROWS_IN = "rows_in"
ROWS_SUPPRESSED = "rows_suppressed"
ROWS_OUT = "rows_out"
CONTEXT_ROWS = "context_rows"

Row = dict[str, Any]


@dataclass(frozen=True)
class IngestPlan:
    """Everything one input split needs; holds no key (workers load it themselves)."""

    policy_json: str
    target_files: list[str]
    context_files: list[str] = field(default_factory=list)
    sequence: SequenceFeaturesConfig | None = None
    k_anonymity_report_path: str | None = None
    window_features: WindowFeaturesConfig | None = None
    time_split: TimeSplitPlan | None = None

    @property
    def policy(self) -> PrivacyPolicy:
        return PrivacyPolicy.from_json(self.policy_json)


class ReadAnonymizedRows(beam.DoFn):
    """(path, is_target) -> (is_target, anonymized row) for every data row of the CSV file.

    The key is loaded in `setup`, on the worker, from the environment or secret file the policy
    names, so it is never pickled into the pipeline graph.
    """

    def __init__(self, policy_json: str, time_split: TimeSplitPlan | None = None) -> None:
        self._policy_json = policy_json
        self._time_split = time_split  # a row's own day then decides whether it is a target (tag_window)
        self._anonymizer: Anonymizer | None = None
        self._rows_in = Metrics.counter(METRICS_NAMESPACE, ROWS_IN)
        self._context_rows = Metrics.counter(METRICS_NAMESPACE, CONTEXT_ROWS)

    def setup(self) -> None:
        policy = PrivacyPolicy.from_json(self._policy_json)
        self._anonymizer = Anonymizer(policy, load_key(policy.key) if policy.needs_key else None)

    def process(self, element: tuple[str, bool]) -> Iterator[tuple[bool, Row]]:
        for _, pair in self.read(*element):
            yield pair

    def read(self, path: str, is_target: bool) -> Iterator[tuple[int, tuple[bool, Row]]]:
        """(line number, (is_target, anonymized row)) for every data row of the file, counted."""
        assert self._anonymizer is not None
        counter = self._rows_in if is_target else self._context_rows
        # utf-8-sig: spreadsheet exports often start with a byte-order mark, which is not part of a name
        with FileSystems.open(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text)
            header = next(reader, None)
            if header is None:
                return
            anonymize = self._anonymizer.bind(header, source=path)
            for cells in reader:
                if not cells:  # blank line
                    continue
                row = anonymize(cells, line=reader.line_num)
                counter.inc()
                pair = (is_target, row) if self._time_split is None else tag_window((is_target, row), self._time_split)
                yield reader.line_num, pair


class _DropSmallGroups(beam.DoFn):
    """Suppress mode: drop rows of groups smaller than k. Fail mode: drop everything if any group is."""

    def __init__(self, quasi_identifiers: list[str], suppress: bool, count: bool) -> None:
        self._quasi_identifiers = quasi_identifiers
        self._suppress = suppress
        self._suppressed = Metrics.counter(METRICS_NAMESPACE, ROWS_SUPPRESSED) if count else None

    def process(self, pair: tuple[bool, Row], violations: dict) -> Iterator[tuple[bool, Row]]:
        small = group_key(pair[1], self._quasi_identifiers) in violations
        if self._suppress and small:
            if self._suppressed is not None:
                self._suppressed.inc()
            return
        if not self._suppress and violations:
            return
        yield pair


def _write_report(_: Any, path: str, k: int, groups: int, rows: int, violations: list) -> None:
    summary = {"k": k, "groups": groups, "rows": rows, "violations": [[list(key), n] for key, n in violations]}
    with FileSystems.create(path) as stream:
        stream.write(json.dumps(summary).encode("utf-8"))


class AnonymizedRows(beam.PTransform):
    """Pipeline root -> anonymized target rows (dicts), k-anonymous and with card histories if configured."""

    def __init__(self, plan: IngestPlan) -> None:
        super().__init__()
        self._plan = plan

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        plan, policy = self._plan, self._plan.policy
        files = [(path, True) for path in plan.target_files] + [(path, False) for path in plan.context_files]
        rows = (
            pipeline
            | "ListFiles" >> beam.Create(files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadAndAnonymize" >> beam.ParDo(ReadAnonymizedRows(plan.policy_json, plan.time_split))
        )
        targets, context = rows | "TargetOrContext" >> beam.Partition(lambda pair, _: 0 if pair[0] else 1, 2)

        if policy.k_anonymity is not None:
            targets, context = self._k_anonymize(pipeline, targets, context, policy.k_anonymity)

        if plan.sequence is None and plan.window_features is None and plan.time_split is None:
            return targets | "Rows" >> beam.Map(lambda pair: pair[1])
        pairs = (targets, context) | "AllRows" >> beam.Flatten()
        if keys_agree(plan.time_split, plan.window_features, plan.sequence):
            # terminal windows first (they read only the terminal's times and labels), then every card step
            # in one GroupByKey: one shuffle by card instead of one per step
            if plan.window_features is not None:
                pairs = pairs | "TerminalWindows" >> AddTerminalWindows(plan.window_features)
            kinds = plan.sequence.feature_kinds(policy.output_columns()) if plan.sequence is not None else {}
            return pairs | "CardPass" >> CardPass(plan.time_split, plan.window_features, plan.sequence, kinds)
        if plan.time_split is not None:
            pairs = pairs | "KnownCompromised" >> RemoveKnownCompromised(plan.time_split)
        if plan.window_features is not None:
            pairs = pairs | "WindowFeatures" >> AddWindowFeatures(plan.window_features)
        if plan.sequence is None:
            return pairs | "OnlyTargets" >> beam.Filter(lambda pair: pair[0]) | "Rows" >> beam.Map(lambda pair: pair[1])
        kinds = plan.sequence.feature_kinds(policy.output_columns())
        return pairs | "CardHistory" >> AddCardHistory(plan.sequence, kinds)

    def _k_anonymize(
        self, pipeline: beam.Pipeline, targets: beam.PCollection, context: beam.PCollection, rule: KAnonymityConfig
    ) -> tuple[beam.PCollection, beam.PCollection]:
        """Count members per quasi-identifier group; drop small groups' rows (or all rows, in fail mode)."""
        qis = list(rule.quasi_identifiers)
        distinct = rule.count_distinct
        members = targets | "GroupAndMember" >> beam.Map(
            lambda pair: (group_key(pair[1], qis), pair[1].get(distinct) if distinct else None))
        small = small_groups(pipeline, members, rule, self._plan.k_anonymity_report_path)
        suppress = rule.on_violation == "suppress"
        targets = targets | "KAnonymize" >> beam.ParDo(
            _DropSmallGroups(qis, suppress, count=True), beam.pvalue.AsDict(small))
        context = context | "KAnonymizeContext" >> beam.ParDo(
            _DropSmallGroups(qis, suppress, count=False), beam.pvalue.AsDict(small))
        return targets, context


def small_groups(
    pipeline: beam.Pipeline, members: beam.PCollection, rule: KAnonymityConfig, report_path: str | None
) -> beam.PCollection:
    """(group key, member) of every target row -> (group key, size) of the groups smaller than k.

    A member is the row's `count_distinct` value (people, e.g. cards), or None when rows are counted;
    the report of group counts is written to `report_path` when given.
    """
    if rule.count_distinct:  # members are people (e.g. cards), not rows
        members = (members
                   | "DistinctMembers" >> beam.Distinct()
                   | "CountMember" >> beam.Map(lambda kv: (kv[0], 1)))
    else:
        members = members | "GroupKey" >> beam.Map(lambda kv: (kv[0], 1))
    group_sizes = members | "GroupSizes" >> beam.CombinePerKey(sum)
    small = group_sizes | "SmallGroups" >> beam.Filter(lambda kv, k: kv[1] < k, rule.k)
    if report_path:
        n_groups = group_sizes | "CountGroups" >> beam.combiners.Count.Globally()
        sizes = group_sizes | "GroupSize" >> beam.Map(lambda kv: kv[1])
        n_members = sizes | "SumSizes" >> beam.CombineGlobally(sum)
        _ = (
            pipeline
            | "ReportTrigger" >> beam.Create([None])
            | "WriteKAnonymityReport" >> beam.Map(
                _write_report, report_path, rule.k,
                beam.pvalue.AsSingleton(n_groups),
                beam.pvalue.AsSingleton(n_members),
                beam.pvalue.AsList(small),
            )
        )
    return small
