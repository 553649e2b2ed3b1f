"""The deploy gate's decision on small, hand-made run reports: each failure is named, and a model that
is blessed, pushed, finite and ahead of the champion by the margin passes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evidence.lineage import NodeExecution
from pipeline.model_gate import GateFacts, decide, facts_from_report, write_gate
from pipeline.report import PromotionGate, RunReport

NODES = ("CsvExampleGen", "Trainer", "Evaluator", "ModelValidator", "Pusher")


def report(**changes) -> RunReport:
    values = {
        "run_id": "run-1", "executions": [NodeExecution(node, "COMPLETE", 1.0, i) for i, node in enumerate(NODES)],
        "metrics": {"auc": 0.97}, "blessed": True, "pushed": True, "version": "1700000000",
        "destination": "/models/breast_cancer/1700000000", "model_validation": {"blessed": 1, "reasons": ""},
        "gate": PromotionGate(metric="auc", value=0.97, lower_bound=0.9, baseline=0.95)}
    values.update(changes)
    return RunReport(**values)


def finite(path: Path) -> list[str]:
    return []


def test_a_blessed_finite_model_ahead_of_the_champion_by_the_margin_passes() -> None:
    facts = facts_from_report(report(), finite)
    verdict = decide(facts, margin=0.01)
    assert verdict.passed and verdict.reasons == []
    assert verdict.notes == ["AUC 0.9700 beats the champion's 0.9500 by +0.0200 (margin 0.01)"]


def test_auc_short_of_the_champion_plus_margin_fails() -> None:
    verdict = decide(facts_from_report(report(), finite), margin=0.03)
    assert not verdict.passed
    assert verdict.reasons == ["AUC 0.9700 does not beat the champion's 0.9500 by the margin 0.03 (needs >= 0.9800)"]


def test_the_first_model_has_no_champion_to_beat() -> None:
    facts = facts_from_report(report(gate=PromotionGate(metric="auc", value=0.97, lower_bound=0.9)), finite)
    verdict = decide(facts, margin=0.5)
    assert verdict.passed and verdict.notes == ["no champion yet: AUC 0.9700 is compared with nothing"]


def test_nan_weights_in_the_pushed_model_fail_and_are_named() -> None:
    seen = []

    def nan_weights(path: Path) -> list[str]:
        seen.append(path)
        return ["dense/kernel", "dense/bias"]

    verdict = decide(facts_from_report(report(), nan_weights), margin=0.0)
    assert seen == [Path("/models/breast_cancer/1700000000")]
    assert verdict.reasons == ["the pushed weights hold NaN or infinity: dense/kernel, dense/bias"]


def test_every_missing_blessing_is_a_reason() -> None:
    unblessed = report(
        executions=[NodeExecution("Trainer", "COMPLETE", 1.0, 1), NodeExecution("Evaluator", "FAILED", 1.0, 2)],
        blessed=False, blessing_failures=["auc 0.8100 below the lower bound 0.9 (overall)"], pushed=False,
        push_reason="not blessed by the Evaluator", destination="",
        model_validation={"blessed": 0, "reasons": "p95 latency 900 ms over the budget 500 ms"})
    checked = []
    verdict = decide(facts_from_report(unblessed, lambda path: checked.append(path) or []), margin=0.0)
    assert checked == []  # nothing was pushed, so no weights to read
    assert verdict.reasons == [
        "components did not complete: Evaluator",
        "the Evaluator did not bless the model: auc 0.8100 below the lower bound 0.9 (overall)",
        "the ModelValidator did not bless the model: p95 latency 900 ms over the budget 500 ms",
        "nothing was pushed: not blessed by the Evaluator",
    ]


def test_no_auc_is_a_reason() -> None:
    verdict = decide(GateFacts(run_id="r", blessed=True, pushed=True), margin=0.0)
    assert "no AUC was recorded for the candidate (did the Evaluator run?)" in verdict.reasons


def test_verdict_and_reports_land_in_one_folder(tmp_path: Path) -> None:
    reports = tmp_path / "governance"
    (reports / "drift").mkdir(parents=True)
    (reports / "drift" / "drift.html").write_text("<html>drift</html>")
    (reports / "lgpd").mkdir()
    (reports / "lgpd" / "report.json").write_text("{}")
    verdict = decide(facts_from_report(report(), finite), margin=0.0)
    path = write_gate(verdict, reports, tmp_path / "gate")
    written = json.loads(path.read_text())
    assert written["passed"] is True and written["facts"]["version"] == "1700000000" and written["margin"] == 0.0
    assert (tmp_path / "gate/drift/drift.html").read_text() == "<html>drift</html>"
    assert (tmp_path / "gate/lgpd/report.json").exists()


@pytest.mark.parametrize("margin", [-0.1, 1.5])
def test_the_margin_is_checked_in_the_config(margin: float) -> None:
    from pipeline.config import ConfigError, EvaluationConfig

    with pytest.raises((ConfigError, ValueError), match="champion_auc_margin"):
        EvaluationConfig(champion_auc_margin=margin)


FRAUD_METRICS = {"auc": 0.88, "average_precision": 0.61, "card_precision_at_100": 0.29, "cards_in_smallest_day": 812.0,
                 "recall_at_100_alerts_per_day": 0.55, "recall_at_fpr_0.01": 0.5}


def fraud_report(value: float = 0.61, baseline: float | None = 0.60) -> RunReport:
    metrics = {**FRAUD_METRICS, "average_precision": value}
    return report(metrics=metrics, gate=PromotionGate(metric="average_precision", value=value, lower_bound=0.5,
                                                      baseline=baseline))


def test_the_gate_judges_the_metric_the_evaluator_gated_on() -> None:
    verdict = decide(facts_from_report(fraud_report(), finite), margin=0.005)
    assert verdict.passed
    assert verdict.notes[0] == "average_precision 0.6100 beats the champion's 0.6000 by +0.0100 (margin 0.005)"
    assert verdict.facts.metric == "average_precision" and verdict.facts.champion_value == 0.60


def test_average_precision_short_of_the_champion_fails_though_auc_is_fine() -> None:
    verdict = decide(facts_from_report(fraud_report(value=0.58), finite), margin=0.0)
    assert verdict.reasons == ["average_precision 0.5800 does not beat the champion's 0.6000 by the margin 0 "
                               "(needs >= 0.6000)"]


def test_the_fraud_metrics_are_shown_and_written() -> None:
    verdict = decide(facts_from_report(fraud_report(), finite), margin=0.0)
    assert verdict.notes[1] == ("candidate also: card_precision_at_100 0.2900, recall_at_fpr_0.01 0.5000, "
                                "recall_at_100_alerts_per_day 0.5500")
    written = json.loads(verdict.to_json())["facts"]
    assert written["fraud_metrics"]["card_precision_at_100"] == 0.29 and written["value"] == 0.61


def test_an_undefined_card_precision_gate_fails_with_the_reason() -> None:
    metrics = {**FRAUD_METRICS, "card_precision_at_100": float("nan"), "cards_in_smallest_day": 43.0}
    gated = report(metrics=metrics, gate=PromotionGate(metric="card_precision_at_100", value=float("nan"),
                                                       lower_bound=0.2))
    verdict = decide(facts_from_report(gated, finite), margin=0.0)
    assert verdict.reasons == [
        "card_precision_at_100 is undefined for the candidate: card_precision_at_100 undefined (the smallest eval "
        "day holds 43 cards, fewer than evaluation.card_precision_k 100: lower it or evaluate more cards per day)"]


def test_the_margin_comes_from_the_gate_section() -> None:
    from pipeline.config import EvaluationConfig, GateConfig

    evaluation = EvaluationConfig(gate=GateConfig(metric="average_precision", lower_bound=0.5, champion_margin=0.02))
    assert evaluation.promotion_gate().champion_margin == 0.02
    assert EvaluationConfig(champion_auc_margin=0.01).promotion_gate().champion_margin == 0.01


def fairness_table(limit: float | None):
    from pipeline.fairness import group_fairness

    groups = ["18-24"] * 4 + ["65+"] * 4
    labels = [0, 0, 0, 1, 0, 0, 0, 1]
    scores = [0.9, 0.8, 0.1, 0.9, 0.1, 0.2, 0.3, 0.9]  # FPR 18-24: 2/3, 65+: 0/3
    table = group_fairness("age_band", groups, labels, scores, 0.5, replicates=50)
    return type(table)(**{**table.__dict__, "max_false_positive_rate_gap": limit})


def test_a_false_positive_rate_gap_above_the_limit_fails_naming_the_gap_groups_and_limit() -> None:
    verdict = decide(facts_from_report(report(fairness=[fairness_table(0.1)]), finite), margin=0.0)
    assert not verdict.passed
    (reason,) = [reason for reason in verdict.reasons if reason.startswith("fairness")]
    assert reason.startswith("fairness: age_band false-positive-rate gap 0.6667 (18-24 0.6667 vs 65+ 0.0000; "
                             "95 % bootstrap interval [")
    assert reason.endswith("above the limit 0.1 (evaluation.max_false_positive_rate_gap)")
    gap = verdict.facts.fairness[0]
    assert (gap["high_group"], gap["low_group"], gap["limit"], gap["passed"]) == ("18-24", "65+", 0.1, False)


def test_a_gap_within_the_limit_or_ungated_is_a_note() -> None:
    verdict = decide(facts_from_report(report(fairness=[fairness_table(0.9)]), finite), margin=0.0)
    assert verdict.passed and any("within the limit 0.9" in note for note in verdict.notes)
    ungated = decide(facts_from_report(report(fairness=[fairness_table(None)]), finite), margin=0.0)
    assert ungated.passed and any(note.startswith("fairness (not gated: no evaluation.max_false_positive_rate_gap)")
                                  for note in ungated.notes)
