"""Keyed pseudonyms: HMAC-SHA256, so equal values link across rows and runs with the same key only."""
from __future__ import annotations

import hashlib
import hmac
from typing import Literal

Normalization = Literal["none", "digits", "casefold"]


class Pseudonymizer:
    """Maps a value to the hex HMAC-SHA256 of its normalized form under one key."""

    def __init__(self, secret: bytes, normalize: Normalization = "none") -> None:
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)
        self._normalize = normalize

    def __call__(self, value: str) -> str:
        mac = self._keyed.copy()  # the key schedule is computed once, not per value
        mac.update(normalized(value, self._normalize).encode("utf-8"))
        return mac.hexdigest()


def normalized(value: str, how: Normalization) -> str:
    """Same person, same pseudonym: '4111 1111-1111 1111' and '4111111111111111' agree under 'digits'."""
    if how == "digits":
        return "".join(ch for ch in value if ch.isdigit())
    if how == "casefold":
        return value.strip().casefold()
    return value
