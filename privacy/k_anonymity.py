"""k-anonymity over quasi-identifiers: find the groups of rows too small to hide in."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GroupKey = tuple[Any, ...]


def group_key(row: Mapping[str, Any], quasi_identifiers: Sequence[str]) -> GroupKey:
    """The row's quasi-identifier values, in the configured order (missing values group as None)."""
    return tuple(row.get(name) for name in quasi_identifiers)


@dataclass(frozen=True)
class KAnonymityReport:
    """Outcome of a k-anonymity check; holds generalized group values only, never raw data."""

    k: int
    quasi_identifiers: tuple[str, ...]
    groups: int
    rows: int  # members counted: rows, or distinct values of the `count_distinct` column
    violations: tuple[tuple[GroupKey, int], ...]  # smallest groups first
    unit: str = "rows"

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def violating_rows(self) -> int:
        return sum(count for _, count in self.violations)

    @property
    def smallest_group(self) -> int:
        return self.violations[0][1] if self.violations else 0

    def describe(self, limit: int = 10) -> str:
        names = ", ".join(self.quasi_identifiers)
        if self.ok:
            return f"k-anonymity holds: {self.groups} groups over ({names}), each with at least k={self.k} rows"
        shown = "; ".join(f"({', '.join(map(str, key))}): {count}" for key, count in self.violations[:limit])
        more = f"; and {len(self.violations) - limit} more" if len(self.violations) > limit else ""
        unit = self.unit
        return (
            f"k-anonymity violated: {len(self.violations)} of {self.groups} groups over ({names}) have fewer "
            f"than k={self.k} {unit} ({self.violating_rows} of {self.rows} {unit}; smallest group: "
            f"{self.smallest_group} {unit}). Smallest groups: {shown}{more}. Fix: generalize further (wider "
            "bins, shorter prefixes), lower privacy.k_anonymity.k, or set "
            "privacy.k_anonymity.on_violation: suppress to drop those rows"
        )


def evaluate(
    group_counts: Mapping[GroupKey, int] | Iterable[tuple[GroupKey, int]],
    k: int,
    quasi_identifiers: Sequence[str],
    unit: str = "rows",
) -> KAnonymityReport:
    """Check member counts per quasi-identifier group against k."""
    items = list(group_counts.items() if isinstance(group_counts, Mapping) else group_counts)
    violations = sorted(((key, n) for key, n in items if n < k), key=lambda item: (item[1], repr(item[0])))
    return KAnonymityReport(
        k=k,
        quasi_identifiers=tuple(quasi_identifiers),
        groups=len(items),
        rows=sum(n for _, n in items),
        violations=tuple(violations),
        unit=unit,
    )
