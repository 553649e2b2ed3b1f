"""The tabular model's settings and column names: the common schema (models/common/settings.py) as is.

The pipeline passes the settings to Transform and Trainer through ``custom_config`` (plain JSON);
this module depends on pydantic only, so the config loader checks them before any TFX work.
"""
from __future__ import annotations

from models.common.settings import CATEGORICAL_TYPES, NUMERIC_TYPES, TrainerSettings

OOV_BUCKETS = 1


def transformed_name(name: str) -> str:
    return f"{name}_xf"


def vocabulary_name(name: str) -> str:
    return f"{name}_vocab"


class TabularSettings(TrainerSettings):
    """What a tabular model needs to know about its data and training, from ``custom_config``."""

    @property
    def numeric_features(self) -> list[str]:
        return [name for name, kind in self.data.features.items() if kind in NUMERIC_TYPES]

    @property
    def categorical_features(self) -> list[str]:
        return [name for name, kind in self.data.features.items() if kind in CATEGORICAL_TYPES]


SETTINGS = TabularSettings  # the schema the pipeline checks this package's config with
