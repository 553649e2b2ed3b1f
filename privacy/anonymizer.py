"""Applies a privacy policy to raw rows: the only place where raw values are looked at."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime

from privacy import generalize
from privacy.errors import InvalidValueError, PseudonymKeyError
from privacy.keys import PseudonymKey
from privacy.policy import (
    AgeBandColumn,
    BandColumn,
    DropColumn,
    DType,
    KeepColumn,
    PrefixColumn,
    PrivacyPolicy,
    PseudonymizeColumn,
)
from privacy.pseudonymize import Pseudonymizer

Value = str | int | float | None
Step = Callable[[str], Value]


class Anonymizer:
    """A policy with its key, ready to be bound to the header of each input file."""

    def __init__(self, policy: PrivacyPolicy, key: PseudonymKey | None) -> None:
        if policy.needs_key and key is None:
            raise PseudonymKeyError("the policy pseudonymizes columns but no key was loaded; see privacy.key")
        self.policy = policy
        self.key = key

    def bind(self, header: Sequence[str], source: str = "the input") -> RowAnonymizer:
        """Check the header against the policy (deny by default) and compile one step per kept column."""
        self.policy.check_header(header, source)
        position = {name: index for index, name in enumerate(header)}
        steps = []
        for column, rule in self.policy.columns.items():
            if isinstance(rule, DropColumn):
                continue
            step, expectation = self._compile(rule)
            steps.append((position[column], column, rule.output or column, step, expectation))
        return RowAnonymizer(steps, width=len(header), source=source)

    def _compile(self, rule: object) -> tuple[Step, str]:
        if isinstance(rule, KeepColumn):
            return _PARSERS[rule.dtype]
        if isinstance(rule, PseudonymizeColumn):
            assert self.key is not None
            return Pseudonymizer(self.key.secret, rule.normalize), "a text value"
        if isinstance(rule, AgeBandColumn):
            reference, bins = rule.reference_date, tuple(rule.bins)
            return (
                lambda raw: generalize.age_band(date.fromisoformat(raw.strip()), reference, bins),
                "a birth date YYYY-MM-DD not after the reference date",
            )
        if isinstance(rule, PrefixColumn):
            length, digits_only = rule.length, rule.digits_only
            return (
                lambda raw: generalize.prefix(raw, length, digits_only),
                f"a value with at least {length} {'digits' if digits_only else 'characters'}",
            )
        if isinstance(rule, BandColumn):
            edges = tuple(rule.edges)
            return lambda raw: generalize.numeric_band(float(raw), edges), "a number"
        raise TypeError(f"unknown column rule {type(rule).__name__}")


class RowAnonymizer:
    """Turns the cells of one raw CSV row into output values; raw values go no further."""

    def __init__(self, steps: list[tuple[int, str, str, Step, str]], width: int, source: str) -> None:
        self._steps = steps
        self._width = width
        self._source = source

    @property
    def output_names(self) -> list[str]:
        return [output for _, _, output, _, _ in self._steps]

    def __call__(self, cells: Sequence[str], line: int | None = None) -> dict[str, Value]:
        where = f"{self._source}, line {line}" if line is not None else self._source
        if len(cells) != self._width:
            raise InvalidValueError(f"{where}: the row has {len(cells)} cells, the header has {self._width}")
        row: dict[str, Value] = {}
        for index, column, output, step, expectation in self._steps:
            raw = cells[index]
            if raw == "":
                row[output] = None
                continue
            try:
                row[output] = step(raw)
            except (ValueError, OverflowError, TypeError):
                # `from None`: the parser's own message would quote the raw value.
                raise InvalidValueError(
                    f"{where}, column {column!r}: the value is not {expectation}; fix the input or the "
                    f"column's treatment in privacy.columns"
                ) from None
        return row


def _timestamp_seconds(raw: str) -> int:
    parsed = datetime.fromisoformat(raw.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


_PARSERS: dict[DType, tuple[Step, str]] = {
    "string": (str, "text"),
    "int": (lambda raw: int(raw.strip()), "an integer"),
    "float": (lambda raw: float(raw.strip()), "a number"),
    "timestamp": (_timestamp_seconds, "an ISO 8601 timestamp"),
}
