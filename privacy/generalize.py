"""Generalizations: replace a precise quasi-identifier by the coarser group it belongs to."""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import date


def age_in_years(birth_date: date, on: date) -> int:
    """Completed years at `on` (a birthday not yet reached this year does not count)."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def age_band(birth_date: date, reference_date: date, bins: Sequence[int]) -> str:
    """Age at `reference_date` to its band: bins [18, 25, 65] give '<18', '18-24', '25-64', '65+'."""
    age = age_in_years(birth_date, reference_date)
    if age < 0:
        raise ValueError("birth date is after the reference date")
    return band_label(age, bins, integer=True)


def prefix(value: str, length: int, digits_only: bool = True) -> str:
    """Leading characters: a CEP '01310-100' with length 3 becomes '013' (its postal sub-region)."""
    text = "".join(ch for ch in value if ch.isdigit()) if digits_only else value.strip()
    if len(text) < length:
        raise ValueError(f"value has fewer than {length} {'digits' if digits_only else 'characters'}")
    return text[:length]


def numeric_band(value: float, edges: Sequence[float]) -> str:
    """A number to its half-open band: edges [0, 10, 50] give '<0', '0-10', '10-50', '50+'."""
    return band_label(value, edges, integer=False)


def band_label(value: float, edges: Sequence[float], *, integer: bool) -> str:
    """Label of the band holding `value`; integer bands name their last member ('18-24')."""
    index = bisect.bisect_right(edges, value)
    if index == 0:
        return f"<{_fmt(edges[0])}"
    if index == len(edges):
        return f"{_fmt(edges[-1])}+"
    low, high = edges[index - 1], edges[index]
    return f"{_fmt(low)}-{_fmt(high - 1 if integer else high)}"


def _fmt(number: float) -> str:
    return f"{number:g}"
