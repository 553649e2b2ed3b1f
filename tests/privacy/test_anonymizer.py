"""Applying a policy to raw rows."""
from __future__ import annotations

import pytest

from privacy.anonymizer import Anonymizer
from privacy.errors import InvalidValueError, PseudonymKeyError, UnlistedColumnError
from privacy.keys import PseudonymKey
from privacy.policy import PrivacyPolicy
from privacy.pseudonymize import Pseudonymizer

KEY = PseudonymKey(b"k" * 32, source="test")
POLICY = PrivacyPolicy.model_validate(
    {
        "columns": {
            "tx": "keep",
            "ts": {"treatment": "keep", "dtype": "timestamp"},
            "n": {"treatment": "keep", "dtype": "int"},
            "amount": {"treatment": "keep", "dtype": "float"},
            "amount_band": {"treatment": "generalize", "method": "band", "edges": [0, 10, 100]},
            "name": "drop",
            "card": {"treatment": "pseudonymize", "normalize": "digits", "output": "card_id"},
            "birth": {"treatment": "generalize", "method": "age_band", "reference_date": "2024-01-01",
                      "output": "age_band"},
            "cep": {"treatment": "generalize", "method": "prefix", "length": 3},
        }
    }
)
HEADER = ["name", "tx", "ts", "n", "amount", "amount_band", "card", "birth", "cep"]


def test_row_is_typed_generalized_pseudonymized_and_stripped_of_dropped_columns() -> None:
    bound = Anonymizer(POLICY, KEY).bind(HEADER)
    row = bound(["Ana Souza", "t1", "2024-03-01T12:00:00", "7", "12.5", "12.5", "4111 1111 1111 1111",
                 "1990-02-03", "01310-100"])
    assert row == {
        "tx": "t1",
        "ts": 1709294400,
        "n": 7,
        "amount": 12.5,
        "amount_band": "10-100",
        "card_id": Pseudonymizer(KEY.secret)("4111111111111111"),
        "age_band": "25-34",
        "cep": "013",
    }
    assert bound.output_names == list(row)
    assert "Ana Souza" not in row.values()


def test_empty_cells_are_missing_values() -> None:
    row = Anonymizer(POLICY, KEY).bind(HEADER)(["", "t1", "", "", "", "", "", "", ""])
    assert row["card_id"] is None and row["age_band"] is None and row["tx"] == "t1"


def test_bad_value_error_says_where_but_not_what() -> None:
    bound = Anonymizer(POLICY, KEY).bind(HEADER, "span-1/transactions.csv")
    with pytest.raises(InvalidValueError) as caught:
        bound(["x", "t1", "2024-03-01", "7", "1.0", "1", "4111", "31/12/1990", "01310-100"], line=42)
    message = str(caught.value)
    assert "span-1/transactions.csv, line 42, column 'birth'" in message and "YYYY-MM-DD" in message
    assert "31/12/1990" not in message
    assert caught.value.__suppress_context__


def test_wrong_cell_count_is_reported() -> None:
    with pytest.raises(InvalidValueError, match="the row has 2 cells, the header has 9"):
        Anonymizer(POLICY, KEY).bind(HEADER)(["a", "b"])


def test_unlisted_header_column_is_refused_at_bind_time() -> None:
    with pytest.raises(UnlistedColumnError, match="'email'"):
        Anonymizer(POLICY, KEY).bind([*HEADER, "email"])


def test_pseudonymizing_policy_needs_a_key() -> None:
    with pytest.raises(PseudonymKeyError):
        Anonymizer(POLICY, None)
