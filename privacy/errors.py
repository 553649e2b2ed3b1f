"""Exception types of the privacy library: each names the problem and the fix, never a raw value."""
from __future__ import annotations

from typing import TYPE_CHECKING

from errors import EsteiraError

if TYPE_CHECKING:
    from privacy.k_anonymity import KAnonymityReport

TREATMENTS = "keep|drop|pseudonymize|generalize"


class PrivacyError(EsteiraError):
    """Base class: anything that stops raw data from being anonymized safely."""


class UnlistedColumnError(PrivacyError):
    """A raw column the policy does not name (deny by default)."""

    def __init__(self, column: str, source: str = "the input") -> None:
        self.column, self.source = column, source
        super().__init__(
            f"column {column!r} of {source} is not in privacy.columns; "
            f"add it with one of {TREATMENTS} (use drop if the pipeline does not need it)"
        )

    def __reduce__(self) -> tuple:  # survive pickling across Beam workers
        return type(self), (self.column, self.source)


class MissingColumnError(PrivacyError):
    """A column the policy names but the input lacks (a typo or a changed export)."""

    def __init__(self, column: str, source: str = "the input") -> None:
        self.column, self.source = column, source
        super().__init__(
            f"column {column!r} is in privacy.columns but not in {source}; "
            "remove it from privacy.columns or fix the input's header"
        )

    def __reduce__(self) -> tuple:  # survive pickling across Beam workers
        return type(self), (self.column, self.source)


class PseudonymKeyError(PrivacyError):
    """No usable HMAC key: pseudonymization cannot run."""


class InvalidValueError(PrivacyError):
    """A raw value the policy cannot treat. The message says where, never what."""


class KAnonymityViolation(PrivacyError):
    """Some quasi-identifier groups are smaller than k and the policy says fail."""

    def __init__(self, report: KAnonymityReport) -> None:
        self.report = report
        super().__init__(report.describe())

    def __reduce__(self) -> tuple:
        return type(self), (self.report,)
