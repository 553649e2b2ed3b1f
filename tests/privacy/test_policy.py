"""The policy model: deny by default, clear errors, stable hashing."""
from __future__ import annotations

import pydantic
import pytest

from privacy.errors import MissingColumnError, UnlistedColumnError
from privacy.policy import AgeBandColumn, DropColumn, KeepColumn, PrivacyPolicy, PseudonymizeColumn

POLICY = {
    "columns": {
        "transaction_id": "keep",
        "amount": {"treatment": "keep", "dtype": "float"},
        "cpf": "drop",
        "card_number": {"treatment": "pseudonymize", "normalize": "digits", "output": "card_id"},
        "birth_date": {
            "treatment": "generalize",
            "method": "age_band",
            "reference_date": "2024-01-01",
            "output": "age_band",
        },
        "cep": {"treatment": "generalize", "method": "prefix", "length": 3, "output": "cep_prefix"},
    },
    "k_anonymity": {"k": 3, "quasi_identifiers": ["age_band", "cep_prefix"]},
}


def test_shorthand_and_mappings_become_typed_rules() -> None:
    policy = PrivacyPolicy.model_validate(POLICY)
    assert isinstance(policy.columns["transaction_id"], KeepColumn)
    assert policy.columns["transaction_id"].dtype == "string"
    assert isinstance(policy.columns["cpf"], DropColumn)
    assert isinstance(policy.columns["card_number"], PseudonymizeColumn)
    assert isinstance(policy.columns["birth_date"], AgeBandColumn)
    assert policy.output_columns() == {
        "transaction_id": "string",
        "amount": "float",
        "card_id": "string",
        "age_band": "string",
        "cep_prefix": "string",
    }
    assert policy.needs_key


def test_unlisted_column_is_refused_with_a_message_naming_it_and_the_fix() -> None:
    policy = PrivacyPolicy.model_validate(POLICY)
    header = ["transaction_id", "amount", "cpf", "card_number", "birth_date", "cep", "email"]
    with pytest.raises(UnlistedColumnError) as caught:
        policy.check_header(header, "day-1.csv")
    message = str(caught.value)
    assert "'email'" in message and "day-1.csv" in message
    assert "privacy.columns" in message and "keep|drop|pseudonymize|generalize" in message


def test_column_named_by_policy_but_absent_from_input_is_refused() -> None:
    policy = PrivacyPolicy.model_validate(POLICY)
    with pytest.raises(MissingColumnError, match=r"'cep' is in privacy\.columns but not in"):
        policy.check_header(["transaction_id", "amount", "cpf", "card_number", "birth_date"])


def test_matching_header_in_any_order_is_accepted() -> None:
    policy = PrivacyPolicy.model_validate(POLICY)
    policy.check_header(["cep", "birth_date", "card_number", "cpf", "amount", "transaction_id"])


def test_unknown_treatment_lists_the_allowed_ones() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        PrivacyPolicy.model_validate({"columns": {"cpf": "hash"}})
    text = str(caught.value)
    assert "cpf" in text and "'keep'" in text and "'generalize'" in text


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        PrivacyPolicy.model_validate({**POLICY, "colums": {}})


def test_bare_generalize_asks_for_a_method() -> None:
    with pytest.raises(pydantic.ValidationError, match="generalize needs a method"):
        PrivacyPolicy.model_validate({"columns": {"birth_date": "generalize"}})


def test_quasi_identifier_must_be_an_output_column() -> None:
    bad = {**POLICY, "k_anonymity": {"k": 3, "quasi_identifiers": ["birth_date"]}}
    with pytest.raises(pydantic.ValidationError, match="'birth_date', which is not an output column"):
        PrivacyPolicy.model_validate(bad)


def test_two_columns_cannot_write_the_same_output() -> None:
    bad = {"columns": {"a": "keep", "b": {"treatment": "keep", "output": "a"}}}
    with pytest.raises(pydantic.ValidationError, match="both write output column 'a'"):
        PrivacyPolicy.model_validate(bad)


def test_bins_must_increase() -> None:
    bad = {"columns": {"amount": {"treatment": "generalize", "method": "band", "edges": [10, 5]}}}
    with pytest.raises(pydantic.ValidationError, match="strictly increasing"):
        PrivacyPolicy.model_validate(bad)


def test_hash_is_stable_under_reordering_and_changes_with_content() -> None:
    policy = PrivacyPolicy.model_validate(POLICY)
    reordered = PrivacyPolicy.model_validate({**POLICY, "columns": dict(reversed(POLICY["columns"].items()))})
    assert policy.sha256() == reordered.sha256()
    changed = PrivacyPolicy.model_validate({**POLICY, "columns": {**POLICY["columns"], "cpf": "pseudonymize"}})
    assert policy.sha256() != changed.sha256()
    assert PrivacyPolicy.from_json(policy.canonical_json()) == policy


def test_count_distinct_must_be_an_output_column() -> None:
    good = {**POLICY, "k_anonymity": {"k": 3, "quasi_identifiers": ["age_band"], "count_distinct": "card_id"}}
    assert PrivacyPolicy.model_validate(good).k_anonymity.count_distinct == "card_id"
    bad = {**POLICY, "k_anonymity": {"k": 3, "quasi_identifiers": ["age_band"], "count_distinct": "card_number"}}
    with pytest.raises(pydantic.ValidationError, match="count_distinct names 'card_number'"):
        PrivacyPolicy.model_validate(bad)
