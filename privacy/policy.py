"""The privacy policy: one treatment for every raw column, declared in the use case's config.

A use case's YAML config embeds it as its `privacy:` section::

    privacy:
      key: {env: ESTEIRA_PSEUDONYM_KEY}
      columns:
        transaction_id: keep
        amount: {treatment: keep, dtype: float}
        cpf: drop
        card_number: {treatment: pseudonymize, normalize: digits, output: card_id}
        birth_date: {treatment: generalize, method: age_band, reference_date: 2024-01-01,
                     bins: [18, 25, 35, 45, 55, 65], output: age_band}
        customer_cep: {treatment: generalize, method: prefix, length: 3, output: cep_prefix}
      k_anonymity: {k: 5, quasi_identifiers: [age_band, cep_prefix], on_violation: suppress}

Every column of the raw input must be named (deny by default); see `privacy.anonymizer`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from privacy.errors import MissingColumnError, UnlistedColumnError

DType = Literal["string", "int", "float", "timestamp"]
"""Types of output columns. `timestamp` parses ISO 8601 into int64 seconds since the epoch (UTC)."""

DEFAULT_KEY_ENV = "ESTEIRA_PSEUDONYM_KEY"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeepColumn(_Rule):
    """Copy the value, parsed to `dtype`."""

    treatment: Literal["keep"] = "keep"
    dtype: DType = "string"
    output: str | None = None


class DropColumn(_Rule):
    """Never read further than the parser: the value does not leave the reading step."""

    treatment: Literal["drop"] = "drop"


class PseudonymizeColumn(_Rule):
    """Replace the value by HMAC-SHA256(key, value): linkable across rows, not reversible without the key."""

    treatment: Literal["pseudonymize"] = "pseudonymize"
    normalize: Literal["none", "digits", "casefold"] = "none"
    output: str | None = None


class AgeBandColumn(_Rule):
    """Birth date (YYYY-MM-DD) to an age band at `reference_date`; `bins` are the bands' lower edges."""

    treatment: Literal["generalize"] = "generalize"
    method: Literal["age_band"] = "age_band"
    reference_date: date
    bins: list[int] = Field(default_factory=lambda: [18, 25, 35, 45, 55, 65])
    output: str | None = None

    @field_validator("bins")
    @classmethod
    def _increasing(cls, bins: list[int]) -> list[int]:
        return _strictly_increasing(bins, "bins")


class PrefixColumn(_Rule):
    """Keep the first `length` characters (digits only, by default: a CEP becomes its region)."""

    treatment: Literal["generalize"] = "generalize"
    method: Literal["prefix"] = "prefix"
    length: int = Field(ge=1)
    digits_only: bool = True
    output: str | None = None


class BandColumn(_Rule):
    """A number to the half-open band [edge_i, edge_i+1) it falls in, e.g. amount 73.10 -> '50-100'."""

    treatment: Literal["generalize"] = "generalize"
    method: Literal["band"] = "band"
    edges: list[float] = Field(min_length=1)
    output: str | None = None

    @field_validator("edges")
    @classmethod
    def _increasing(cls, edges: list[float]) -> list[float]:
        return _strictly_increasing(edges, "edges")


GeneralizeColumn = Annotated[AgeBandColumn | PrefixColumn | BandColumn, Field(discriminator="method")]
ColumnRule = Annotated[
    KeepColumn | DropColumn | PseudonymizeColumn | GeneralizeColumn, Field(discriminator="treatment")
]


def _strictly_increasing(values: Sequence[float], name: str) -> Any:
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"{name} must be strictly increasing, got {list(values)}")
    return values


class PseudonymKeyConfig(BaseModel):
    """Where the HMAC key comes from. The key itself is never part of the config or the repo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = DEFAULT_KEY_ENV
    file: Path | None = None
    use_demo_key: bool = False


class KAnonymityConfig(BaseModel):
    """Every combination of quasi-identifier values must occur in at least k rows.

    With `count_distinct` (an output column such as the card pseudonym), a group's size is the
    number of distinct people in it rather than rows: one customer's many transactions do not
    make a group large.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(ge=2)
    quasi_identifiers: list[str] = Field(min_length=1)
    count_distinct: str | None = None
    on_violation: Literal["fail", "suppress"] = "fail"


class PrivacyPolicy(BaseModel):
    """The `privacy:` section of a use case's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, ColumnRule] = Field(min_length=1)
    key: PseudonymKeyConfig = Field(default_factory=PseudonymKeyConfig)
    k_anonymity: KAnonymityConfig | None = None

    @field_validator("columns", mode="before")
    @classmethod
    def _expand_shorthand(cls, columns: Any) -> Any:
        """Accept `cpf: drop` as short for `cpf: {treatment: drop}`."""
        if not isinstance(columns, dict):
            return columns
        expanded = {}
        for name, rule in columns.items():
            if rule == "generalize":
                raise ValueError(
                    f"column {name!r}: generalize needs a method; write "
                    "{treatment: generalize, method: age_band|prefix|band, ...}"
                )
            expanded[name] = {"treatment": rule} if isinstance(rule, str) else rule
        return expanded

    @model_validator(mode="after")
    def _outputs_are_consistent(self) -> PrivacyPolicy:
        outputs: dict[str, str] = {}
        for column, rule in self.columns.items():
            if isinstance(rule, DropColumn):
                continue
            name = rule.output or column
            if name in outputs:
                raise ValueError(
                    f"columns {outputs[name]!r} and {column!r} both write output column {name!r}; "
                    "give one of them another `output:` name"
                )
            outputs[name] = column
        if self.k_anonymity:
            for qi in self.k_anonymity.quasi_identifiers:
                if qi not in outputs:
                    raise ValueError(
                        f"k_anonymity.quasi_identifiers names {qi!r}, which is not an output column; "
                        f"use one of {sorted(outputs)} (output names, after renaming)"
                    )
            distinct = self.k_anonymity.count_distinct
            if distinct is not None and distinct not in outputs:
                raise ValueError(
                    f"k_anonymity.count_distinct names {distinct!r}, which is not an output column; "
                    f"use one of {sorted(outputs)}, e.g. the pseudonymized card or customer id"
                )
        return self

    # -- derived views -------------------------------------------------------------------------

    def output_columns(self) -> dict[str, DType]:
        """Output column name -> type, in the policy's column order (dropped columns are absent)."""
        result: dict[str, DType] = {}
        for column, rule in self.columns.items():
            if isinstance(rule, DropColumn):
                continue
            result[rule.output or column] = rule.dtype if isinstance(rule, KeepColumn) else "string"
        return result

    @property
    def needs_key(self) -> bool:
        return any(isinstance(rule, PseudonymizeColumn) for rule in self.columns.values())

    def check_header(self, header: Sequence[str], source: str = "the input") -> None:
        """Refuse a raw header unless it names exactly the policy's columns (order is free)."""
        seen: set[str] = set()
        for column in header:
            if column in seen:
                raise ValueError(f"column {column!r} appears twice in the header of {source}; fix the input")
            seen.add(column)
            if column not in self.columns:
                raise UnlistedColumnError(column, source)
        for column in self.columns:
            if column not in seen:
                raise MissingColumnError(column, source)

    def canonical_json(self) -> str:
        """Stable JSON (sorted keys, defaults included): what is recorded and hashed."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> PrivacyPolicy:
        return cls.model_validate_json(text)
