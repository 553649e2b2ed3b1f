"""k-anonymity: a violation gives a clear report."""
from __future__ import annotations

from collections import Counter

import pytest

from privacy.errors import KAnonymityViolation
from privacy.k_anonymity import evaluate, group_key

QIS = ["age_band", "cep_prefix"]


def _rows() -> list[dict]:
    rows = [{"age_band": "25-34", "cep_prefix": "013"}] * 5 + [{"age_band": "35-44", "cep_prefix": "200"}] * 4
    return [*rows, {"age_band": "65+", "cep_prefix": "699"}]


def test_report_lists_small_groups_smallest_first() -> None:
    report = evaluate(Counter(group_key(row, QIS) for row in _rows()), k=5, quasi_identifiers=QIS)
    assert not report.ok
    assert report.groups == 3 and report.rows == 10
    assert report.violations == ((("65+", "699"), 1), (("35-44", "200"), 4))
    assert report.violating_rows == 5 and report.smallest_group == 1


def test_violation_error_names_k_the_groups_and_the_fix() -> None:
    report = evaluate(Counter(group_key(row, QIS) for row in _rows()), k=5, quasi_identifiers=QIS)
    with pytest.raises(KAnonymityViolation) as caught:
        raise KAnonymityViolation(report)
    message = str(caught.value)
    assert "k-anonymity violated: 2 of 3 groups over (age_band, cep_prefix)" in message
    assert "fewer than k=5 rows" in message and "(65+, 699): 1" in message
    assert "on_violation: suppress" in message and "generalize further" in message


def test_passes_when_every_group_has_k_rows() -> None:
    report = evaluate(Counter(group_key(row, QIS) for row in _rows()), k=1, quasi_identifiers=QIS)
    assert report.ok and "holds" in report.describe()


def test_report_message_is_bounded() -> None:
    counts = {(str(i), "x"): 1 for i in range(50)}
    message = evaluate(counts, k=2, quasi_identifiers=QIS).describe(limit=3)
    assert "and 47 more" in message


def test_counting_distinct_people_names_the_unit() -> None:
    rows = [{"age_band": "25-34", "cep_prefix": "013", "card": "x"}] * 6  # one person, six rows
    by_rows = Counter(group_key(row, QIS) for row in rows)
    assert evaluate(by_rows, k=5, quasi_identifiers=QIS).ok
    people = Counter(group_key(row, QIS) for row in {tuple(sorted(r.items())): r for r in rows}.values())
    report = evaluate(people, k=5, quasi_identifiers=QIS, unit="distinct card")
    assert not report.ok and "fewer than k=5 distinct card" in report.describe()
