"""Fraud metrics: AP as scikit-learn computes it, Card Precision@k as the handbook defines it."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_curve

from models.fraud.metrics import (
    FraudMetricError,
    average_precision,
    card_precision_at_k,
    recall_at_daily_alert_budget,
    recall_at_false_positive_rate,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_equals_scikit_learn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(2000) < 0.02).astype(int)
    scores = np.round(rng.random(2000) + labels * 0.3, 1)  # rounding makes many ties
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_average_precision_hand_example() -> None:
    # ranked: 0.9 (fraud), 0.8 (legit), 0.7 (fraud): AP = 1/2 * 1 + 1/2 * 2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([0, 0], [0.1, 0.2]) == 0.0


def test_card_precision_hand_example_with_removal_and_ties() -> None:
    rows = [  # day, card, label, score
        (0, "a", 1, 0.9), (0, "a", 0, 0.1),  # card a: max 0.9, compromised
        (0, "b", 0, 0.8),
        (0, "c", 1, 0.2), (0, "c", 0, 0.7),  # card c: max 0.7 (its legit row), compromised (any fraud)
        (0, "d", 0, 0.6),
        (1, "a", 1, 0.99),                   # a was detected on day 0: it leaves day 1
        (1, "b", 0, 0.5), (1, "e", 1, 0.5),  # tie at 0.5: b before e (card key ascending)
        (1, "f", 1, 0.4),
        (2, "c", 1, 0.9),                    # c ranked third on day 0, so it was not detected
    ]
    days, cards, labels, scores = (np.array(c) for c in zip(*rows, strict=True))
    mean, per_day = card_precision_at_k(days, cards, labels, scores, k=2)
    # day 0: top 2 = a (0.9, fraud), b (0.8) -> 1/2; only a is detected (c ranked third)
    # day 1: a removed; b and e tie at 0.5, b first -> top 2 = b, e -> 1/2; e detected
    # day 2: c was not detected on day 0 -> top 2 = c -> 1/2 (over k, not over the cards present)
    assert per_day == {0: 0.5, 1: 0.5, 2: 0.5}
    assert mean == pytest.approx(0.5)
    # the tie rule does not depend on row order
    order = np.random.default_rng(0).permutation(len(rows))
    assert card_precision_at_k(days[order], cards[order], labels[order], scores[order], k=2)[1] == per_day
    # with k = 3, c is detected on day 0 and leaves day 2
    _, per_day3 = card_precision_at_k(days, cards, labels, scores, k=3)
    assert per_day3 == {0: 2 / 3, 1: 2 / 3, 2: 0.0}


def test_card_precision_does_not_remove_legitimate_cards_in_the_top_k() -> None:
    days = np.array([0, 0, 1, 1])
    cards = np.array([1, 2, 1, 2])
    labels = np.array([0, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.9, 0.1])
    _, per_day = card_precision_at_k(days, cards, labels, scores, k=1)
    assert per_day == {0: 0.0, 1: 1.0}


def test_recall_at_false_positive_rate_matches_the_roc_curve() -> None:
    rng = np.random.default_rng(5)
    labels = (rng.random(3000) < 0.05).astype(int)
    scores = rng.normal(size=3000) + 1.5 * labels
    fpr, tpr, _ = roc_curve(labels, scores)
    for rate in (0.0, 0.01, 0.05, 0.2):
        assert recall_at_false_positive_rate(labels, scores, rate) == pytest.approx(tpr[fpr <= rate].max())
    assert np.isnan(recall_at_false_positive_rate([0, 0], [0.1, 0.2], 0.1))


def test_recall_at_daily_alert_budget_hand_example() -> None:
    days = np.array([0, 0, 0, 1, 1, 1])
    labels = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.6, 0.5])
    assert recall_at_daily_alert_budget(days, labels, scores, alerts_per_day=1) == pytest.approx(1 / 3)
    assert recall_at_daily_alert_budget(days, labels, scores, alerts_per_day=2) == pytest.approx(2 / 3)
    assert recall_at_daily_alert_budget(days, labels, scores, alerts_per_day=3) == 1.0


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(FraudMetricError, match="mismatched lengths"):
        average_precision([0, 1], [0.1])
    with pytest.raises(FraudMetricError, match="no rows"):
        average_precision([], [])
    with pytest.raises(FraudMetricError, match="k must be an integer >= 1"):
        card_precision_at_k([0], [1], [1], [0.5], k=0)
    with pytest.raises(FraudMetricError, match="mismatched lengths"):
        card_precision_at_k([0, 0], [1], [1, 0], [0.5, 0.1])
    with pytest.raises(FraudMetricError, match="labels must be 0 or 1"):
        average_precision([0, 2], [0.1, 0.2])
    with pytest.raises(FraudMetricError, match="NaN"):
        average_precision([0, 1], [0.1, np.nan])
    with pytest.raises(FraudMetricError, match="rate must be"):
        recall_at_false_positive_rate([0, 1], [0.1, 0.2], 1.5)
    with pytest.raises(FraudMetricError, match="alerts_per_day"):
        recall_at_daily_alert_budget([0], [1], [0.5], 0)
