"""The publish gate: a variant goes beside the SavedModel only if its AUC held on the same eval rows."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from optimization.settings import Variant


@dataclass(frozen=True)
class Verdict:
    """Whether one variant passed, with the values it was judged on."""

    variant: Variant
    passed: bool
    reason: str


def judge(variant: Variant, auc_before: float, auc_after: float | None, max_auc_drop: float,
          failure: str = "") -> Verdict:
    """Pass when the AUC drop (before - after) is at most ``max_auc_drop``; without an AUC (the variant did
    not convert, or does not run) it fails with ``failure`` as the reason."""
    if auc_after is None:
        return Verdict(variant, False, failure or "not measured")
    drop = auc_before - auc_after
    if drop <= max_auc_drop:
        return Verdict(variant, True, f"AUC {auc_before:.4f} -> {auc_after:.4f} (drop {drop:+.4f} <= {max_auc_drop:g})")
    return Verdict(variant, False, f"AUC {auc_before:.4f} -> {auc_after:.4f} (drop {drop:+.4f} > {max_auc_drop:g})")


def choose(verdicts: Sequence[Verdict], preference: Sequence[Variant]) -> Verdict | None:
    """The first variant in ``preference`` that passed, or None (nothing is published)."""
    passed = {v.variant: v for v in verdicts if v.passed}
    return next((passed[variant] for variant in preference if variant in passed), None)
