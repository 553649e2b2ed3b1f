"""Fraud metrics as a fraud team reads them, in pure numpy: average precision, Card Precision@k,
recall at a false-positive rate and recall at a daily alert budget.

Frauds are well under 1 % of transactions, so AUC ROC says little; these metrics ask how many of the
alerts an investigator can afford are really fraud. Card Precision@k follows the Fraud Detection
Handbook (Le Borgne et al., 2022): per day, each card's highest score, the top k cards, the share
compromised; cards already detected on earlier days leave the ranking.
"""
from __future__ import annotations

import numpy as np

from errors import EsteiraError


class FraudMetricError(EsteiraError, ValueError):
    """Input a fraud metric cannot be computed from (the message names the problem and the fix)."""


def _arrays(**arrays: np.ndarray) -> dict[str, np.ndarray]:
    out = {name: np.asarray(array) for name, array in arrays.items()}
    for name, array in out.items():
        if array.ndim != 1:
            raise FraudMetricError(f"{name} must be one-dimensional, got shape {array.shape}: pass one value per row")
    lengths = {name: array.size for name, array in out.items()}
    if len(set(lengths.values())) > 1:
        raise FraudMetricError(f"mismatched lengths {lengths}: pass one value per row in every array")
    if next(iter(lengths.values())) == 0:
        raise FraudMetricError("no rows: a metric needs at least one scored row")
    if "labels" in out:
        labels = out["labels"]
        if not np.all((labels == 0) | (labels == 1)):
            raise FraudMetricError("labels must be 0 or 1 (is_fraud); found other values")
        out["labels"] = labels.astype(np.int64)
    if "scores" in out:
        scores = out["scores"].astype(np.float64)
        if not np.all(np.isfinite(scores)):
            raise FraudMetricError("scores contain NaN or infinity: check the model's output before scoring")
        out["scores"] = scores
    return out


def _ranked_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest score first (ties together)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_tie = np.flatnonzero(np.concatenate([s[1:] != s[:-1], [True]]))
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision as scikit-learn defines it: sum over thresholds of (R_n - R_(n-1)) * P_n.

    With no fraud at all it is 0.0, as scikit-learn returns (with a warning there).
    """
    a = _arrays(labels=labels, scores=scores)
    tp, fp = _ranked_counts(a["labels"], a["scores"])
    positives = tp[-1]
    if positives == 0:
        return 0.0
    precision = tp / (tp + fp)
    recall_gain = np.diff(np.concatenate([[0.0], tp])) / positives
    return float(np.sum(recall_gain * precision))


def card_precision_at_k(days: np.ndarray, cards: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                        k: int = 100) -> tuple[float, dict[int, float]]:
    """Mean over days of the share of compromised cards among the k highest-scored cards of the day.

    A card's score for a day is its highest transaction score, its label 1 when any of its
    transactions that day is fraud. Compromised cards found in the top k leave the later days (an
    investigator has already blocked them). Ties in score are broken by card key ascending, so the
    result does not depend on row order. The share is always over k, even on a day with fewer cards
    (the book's definition). Returns (mean, {day: precision}).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise FraudMetricError(f"k must be an integer >= 1 (cards an investigator checks per day), got {k!r}")
    a = _arrays(days=days, cards=cards, labels=labels, scores=scores)
    day_values, day_codes = np.unique(a["days"], return_inverse=True)
    _, card_codes = np.unique(a["cards"], return_inverse=True)
    day_codes, card_codes = day_codes.reshape(-1), card_codes.reshape(-1)
    # one row per (day, card): the highest score and whether any transaction was fraud
    pair = day_codes.astype(np.int64) * (card_codes.max() + 1) + card_codes
    pairs, pair_codes = np.unique(pair, return_inverse=True)
    pair_codes = pair_codes.reshape(-1)
    best = np.full(pairs.size, -np.inf)
    np.maximum.at(best, pair_codes, a["scores"])
    fraud = np.zeros(pairs.size, dtype=np.int64)
    np.maximum.at(fraud, pair_codes, a["labels"])
    pair_day = pairs // (card_codes.max() + 1)
    pair_card = pairs % (card_codes.max() + 1)
    detected = np.zeros(card_codes.max() + 1, dtype=bool)
    per_day: dict[int, float] = {}
    for code, day in enumerate(day_values):
        rows = np.flatnonzero((pair_day == code) & ~detected[pair_card])
        # sort by score descending, then card ascending (pairs are already in card order)
        top = rows[np.argsort(-best[rows], kind="stable")[:k]]
        hits = pair_card[top][fraud[top] == 1]
        detected[hits] = True
        per_day[_day_key(day)] = hits.size / k
    return float(np.mean(list(per_day.values()))), per_day


def _day_key(day: object) -> int:
    value = np.asarray(day)
    if not np.issubdtype(value.dtype, np.number) or float(value) != int(value):
        raise FraudMetricError(f"days must be whole day indices, got {day!r}: pass time_split.day_index(times, origin)")
    return int(value)


def recall_at_false_positive_rate(labels: np.ndarray, scores: np.ndarray, rate: float) -> float:
    """Highest share of frauds caught by a threshold whose false-positive rate is at most `rate`.

    Tied scores stand or fall together. NaN when there is no fraud or no legitimate row.
    """
    if not np.isfinite(rate) or not 0.0 <= rate <= 1.0:
        raise FraudMetricError(f"rate must be a false-positive rate in [0, 1], got {rate!r}; e.g. 0.01")
    a = _arrays(labels=labels, scores=scores)
    tp, fp = _ranked_counts(a["labels"], a["scores"])
    positives, negatives = tp[-1], fp[-1]
    if positives == 0 or negatives == 0:
        return float("nan")
    allowed = fp / negatives <= rate + 1e-12
    return float(tp[allowed].max() / positives) if np.any(allowed) else 0.0


def recall_at_daily_alert_budget(days: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                                 alerts_per_day: int) -> float:
    """Share of all frauds caught when only the `alerts_per_day` highest-scored transactions of each day
    are alerted (ties by row order). NaN when there is no fraud."""
    if isinstance(alerts_per_day, bool) or not isinstance(alerts_per_day, (int, np.integer)) or alerts_per_day < 1:
        raise FraudMetricError(f"alerts_per_day must be an integer >= 1, got {alerts_per_day!r}")
    a = _arrays(days=days, labels=labels, scores=scores)
    positives = a["labels"].sum()
    if positives == 0:
        return float("nan")
    _, day_codes = np.unique(a["days"], return_inverse=True)
    day_codes = day_codes.reshape(-1)
    order = np.lexsort((-a["scores"], day_codes))  # by day, then score descending, stable
    sorted_days = day_codes[order]
    starts = np.searchsorted(sorted_days, sorted_days, side="left")
    rank_in_day = np.arange(order.size) - starts
    alerted = order[rank_in_day < alerts_per_day]
    return float(a["labels"][alerted].sum() / positives)
