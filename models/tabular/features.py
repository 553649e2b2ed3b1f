"""The contract between the pipeline config and a tabular model: which columns, which types.

The pipeline passes these settings to Transform and Trainer through ``custom_config`` (plain JSON),
so this module depends on nothing but the standard library.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

NUMERIC_TYPES = ("float", "int")
CATEGORICAL_TYPES = ("string",)
OOV_BUCKETS = 1


def transformed_name(name: str) -> str:
    return f"{name}_xf"


def vocabulary_name(name: str) -> str:
    return f"{name}_vocab"


@dataclass(frozen=True)
class TabularSettings:
    """What a tabular model needs to know about its data and training, from ``custom_config``."""

    label: str
    features: dict[str, str]
    hidden_units: tuple[int, ...] = (32, 16)
    dropout: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 32
    seed: int = 42
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_custom_config(cls, config: Mapping[str, Any]) -> "TabularSettings":
        known = {"label", "features", "hidden_units", "dropout", "learning_rate", "batch_size", "seed"}
        missing = {"label", "features"} - set(config)
        if missing:
            raise ValueError(f"custom_config lacks {sorted(missing)}; the pipeline must pass them")
        values = {key: config[key] for key in known if key in config}
        if "hidden_units" in values:
            values["hidden_units"] = tuple(values["hidden_units"])
        return cls(**values, extra={k: v for k, v in config.items() if k not in known})

    def to_custom_config(self) -> dict[str, Any]:
        return {"label": self.label, "features": dict(self.features),
                "hidden_units": list(self.hidden_units), "dropout": self.dropout,
                "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                "seed": self.seed, **self.extra}

    @property
    def numeric_features(self) -> list[str]:
        return [name for name, kind in self.features.items() if kind in NUMERIC_TYPES]

    @property
    def categorical_features(self) -> list[str]:
        return [name for name, kind in self.features.items() if kind in CATEGORICAL_TYPES]
