"""HMAC pseudonyms: stable for a key, different across keys."""
from __future__ import annotations

import hashlib
import hmac

from privacy.pseudonymize import Pseudonymizer

KEY_A = b"a" * 32
KEY_B = b"b" * 32


def test_same_key_same_value_gives_the_same_pseudonym() -> None:
    assert Pseudonymizer(KEY_A)("529.982.247-25") == Pseudonymizer(KEY_A)("529.982.247-25")


def test_is_hmac_sha256_of_the_value() -> None:
    expected = hmac.new(KEY_A, b"4111111111111111", hashlib.sha256).hexdigest()
    assert Pseudonymizer(KEY_A)("4111111111111111") == expected


def test_different_keys_give_different_pseudonyms() -> None:
    assert Pseudonymizer(KEY_A)("4111111111111111") != Pseudonymizer(KEY_B)("4111111111111111")


def test_different_values_give_different_pseudonyms() -> None:
    pseudonymize = Pseudonymizer(KEY_A)
    assert pseudonymize("4111111111111111") != pseudonymize("4111111111111112")


def test_digits_normalization_links_formatting_variants() -> None:
    pseudonymize = Pseudonymizer(KEY_A, normalize="digits")
    assert pseudonymize("4111 1111-1111 1111") == pseudonymize("4111111111111111")
    assert Pseudonymizer(KEY_A)("4111 1111-1111 1111") != Pseudonymizer(KEY_A)("4111111111111111")


def test_casefold_normalization_for_emails() -> None:
    pseudonymize = Pseudonymizer(KEY_A, normalize="casefold")
    assert pseudonymize(" Ana.Souza@Example.com") == pseudonymize("ana.souza@example.com")
