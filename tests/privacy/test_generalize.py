"""Each generalization: age band, prefix (CEP), numeric band (amount)."""
from __future__ import annotations

from datetime import date

import pytest

from privacy.generalize import age_band, age_in_years, numeric_band, prefix

BINS = [18, 25, 35, 45, 55, 65]


def test_age_counts_completed_years_only() -> None:
    assert age_in_years(date(2000, 6, 15), on=date(2024, 6, 14)) == 23
    assert age_in_years(date(2000, 6, 15), on=date(2024, 6, 15)) == 24


@pytest.mark.parametrize(
    ("birth", "band"),
    [
        (date(2010, 1, 1), "<18"),
        (date(2006, 1, 1), "18-24"),  # 18 on the reference date
        (date(1999, 1, 2), "18-24"),  # 24, turns 25 the next day
        (date(1999, 1, 1), "25-34"),
        (date(1980, 5, 5), "35-44"),
        (date(1959, 1, 1), "65+"),
        (date(1930, 1, 1), "65+"),
    ],
)
def test_age_band_relative_to_the_reference_date(birth: date, band: str) -> None:
    assert age_band(birth, date(2024, 1, 1), BINS) == band


def test_age_band_uses_configured_bins() -> None:
    assert age_band(date(1990, 1, 1), date(2024, 1, 1), [30, 60]) == "30-59"


def test_birth_after_reference_is_invalid() -> None:
    with pytest.raises(ValueError, match="after the reference date"):
        age_band(date(2030, 1, 1), date(2024, 1, 1), BINS)


def test_cep_prefix_keeps_leading_digits() -> None:
    assert prefix("01310-100", 3) == "013"
    assert prefix("01310100", 5) == "01310"


def test_prefix_refuses_short_values() -> None:
    with pytest.raises(ValueError, match="fewer than 5 digits"):
        prefix("01-3", 5)


@pytest.mark.parametrize(
    ("amount", "band"),
    [(-1.0, "<0"), (0.0, "0-10"), (9.99, "0-10"), (10.0, "10-50"), (73.1, "50-100"), (100.0, "100+"), (1e6, "100+")],
)
def test_amount_band_is_half_open(amount: float, band: str) -> None:
    assert numeric_band(amount, [0, 10, 50, 100]) == band


def test_amount_band_with_fractional_edges() -> None:
    assert numeric_band(2.75, [0, 2.5, 5]) == "2.5-5"
