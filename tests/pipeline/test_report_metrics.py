"""`esteira report`'s metric and gate lines on hand-made run reports: the fraud team's metrics appear when
the Evaluator reported them, an undefined Card Precision@k says why, and the gate names its metric."""
from __future__ import annotations

from pathlib import Path

from evidence.lineage import NodeExecution
from pipeline.report import PromotionGate, RunReport, format_report, gated_threshold

METRICS = {"auc": 0.8812, "auc_precision_recall": 0.6, "average_precision": 0.6123, "example_count": 58264,
           "card_precision_at_100": 0.2914, "cards_in_smallest_day": 812.0, "recall_at_100_alerts_per_day": 0.5531}


def lines(**changes) -> list[str]:
    values = {"run_id": "run-1", "executions": [NodeExecution("Evaluator", "COMPLETE", 1.0, 1)], "metrics": METRICS,
              "gate": PromotionGate(metric="average_precision", value=0.6123, lower_bound=0.5, baseline=0.6,
                                    change=0.0123, change_threshold=-0.02)}
    values.update(changes)
    return format_report(RunReport(**values), Path("/serving")).splitlines()


def test_the_fraud_metrics_and_the_gate_on_average_precision_are_shown() -> None:
    shown = lines()
    assert "eval AUC 0.8812 on 58264 examples (auc_precision_recall 0.6000, average_precision 0.6123)" in shown
    assert "per-day budgets: card_precision_at_100 0.2914, recall_at_100_alerts_per_day 0.5531" in shown
    assert "promotion gate on average_precision: baseline 0.6000 (latest blessed model)" in shown
    assert "  average_precision 0.6123 vs floor 0.5: pass" in shown
    assert "  change +0.0123 vs allowed -0.02: pass" in shown


def test_an_undefined_card_precision_names_the_key_and_the_smallest_day() -> None:
    shown = lines(metrics={**METRICS, "card_precision_at_100": float("nan"), "cards_in_smallest_day": 43.0})
    assert ("per-day budgets: card_precision_at_100 undefined (the smallest eval day holds 43 cards, fewer than "
            "evaluation.card_precision_k 100: lower it or evaluate more cards per day), "
            "recall_at_100_alerts_per_day 0.5531") in shown


def test_a_run_without_fraud_metrics_keeps_its_auc_lines() -> None:
    shown = lines(metrics={"auc": 0.97, "example_count": 100},
                  gate=PromotionGate(metric="auc", value=0.97, lower_bound=0.95))
    assert not any(line.startswith("per-day budgets") for line in shown)
    assert "promotion gate on AUC: no blessed baseline yet (change thresholds apply from the next run)" in shown
    assert "  AUC 0.9700 vs floor 0.95: pass" in shown


def test_the_model_card_shows_the_fraud_metrics() -> None:
    from privacy.access import summarize_access
    from privacy.compliance import ComplianceReport, Gate, render_model_card

    evaluation = {"auc": 0.8812, "average_precision": 0.6123, "card_precision_at_100": float("nan"),
                  "cards_in_smallest_day": 43.0, "recall_at_100_alerts_per_day": 0.5531, "example_count": 58264.0}
    report = ComplianceReport(
        model="fraud", version="7", pushed_at="t", destination="/srv/fraud/7", generated_at="t",
        run={"run_id": "r1", "actor": "ci", "ran_at": "t"},
        data={"spans": [2], "rows_in": 1, "rows_out": 1, "rows_suppressed": 0, "input_sha256": "ab",
              "date_range": None}, privacy=None, training={},
        gates=[Gate("Evaluator", "average_precision", 0.6123, ">= 0.5", True)], blessings=[],
        access=summarize_access([], "fraud", "7"), governance=None, evaluation=evaluation)
    card = render_model_card(report)
    assert "Overall eval split, 58264 examples:" in card
    assert "- average_precision: 0.6123\n" in card and "- recall_at_100_alerts_per_day: 0.5531\n" in card
    assert ("- card_precision_at_100: undefined (a day of the eval split holds fewer cards than k; see "
            "evaluation.card_precision_k) (smallest day: 43 cards)\n") in card
    assert "| Evaluator | average_precision | 0.6123 | >= 0.5 | passed |" in card


def test_the_run_report_shows_each_groups_figures_and_the_gap_gate() -> None:
    from pipeline.fairness import group_fairness

    table = group_fairness("cep_region", ["1"] * 4 + ["2"] * 4, [0, 0, 0, 1, 0, 0, 0, 1],
                           [0.9, 0.1, 0.1, 0.9, 0.1, 0.2, 0.3, 0.2], 0.5, replicates=50)
    table = type(table)(**{**table.__dict__, "max_false_positive_rate_gap": 0.5})
    shown = lines(fairness=[table])
    assert "fairness by cep_region (eval split, alert above 0.5):" in shown
    assert "  1: FPR 0.3333, FNR 0.0000, AP 0.5000 (4 examples, 1 positive)" in shown
    assert "  2: FPR 0.0000, FNR 1.0000, AP 0.3333 (4 examples, 1 positive)" in shown
    (gate,) = [line for line in shown if line.startswith("  gate: ")]
    assert gate.startswith("  gate: cep_region false-positive-rate gap 0.3333 (1 0.3333 vs 2 0.0000; 95 % bootstrap")
    assert gate.endswith("within the limit 0.5 (evaluation.max_false_positive_rate_gap): pass")


def test_the_gate_is_the_metric_gated_not_a_fairness_gaps_bound_after_it() -> None:
    from tensorflow_model_analysis.proto import config_pb2

    bound = config_pb2.MetricThreshold()
    bound.value_threshold.lower_bound.value = 0.5
    gap = config_pb2.MetricThreshold()
    gap.value_threshold.upper_bound.value = 0.1
    name, threshold = gated_threshold([("average_precision", bound), ("false_positive_rate_gap_age_band", gap)])
    assert name == "average_precision" and threshold is bound
    assert gated_threshold([]) == ("auc", None)
