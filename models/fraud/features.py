"""The contract between the pipeline config and the fraud model: columns, card history, options.

The fraud model's settings extend the common schema (models/common/settings.py) with its options
(``model.options``) and the card-history layout. The pipeline passes them to Transform and Trainer
through ``custom_config`` (plain JSON) and the config loader checks them with this same schema, so
every mistake is reported before any TensorFlow work, naming the key and the fix.
"""
from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StrictBool, ValidationInfo, field_validator, model_validator

from models.common.settings import (
    CATEGORICAL_TYPES,
    NUMERIC_TYPES,
    DataSettings,
    FeatureType,
    ModelSettings,
    SequenceLayout,
    Settings,
    SettingsError,
    TrainerSettings,
)

OOV_BUCKETS = 1

# Fixed amount bands (currency units) for slicing evaluation metrics. Fixed, not learnt, so a slice
# means the same thing for every model version and the Evaluator's change threshold compares like
# with like. Band i holds amounts in [EDGES[i-1], EDGES[i]): band 0 is < 10, band 7 is >= 2500.
AMOUNT_BAND_EDGES: tuple[float, ...] = (10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
AMOUNT_BAND = "amount_band"
HOUR_OF_DAY = "hour_of_day"
DAY_OF_WEEK = "day_of_week"
HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7

# The history features every card-history layout carries besides the per-transaction values.
SECONDS_SINCE = "seconds_since"
MASK = "mask"
COUNT = "count"


class FraudConfigError(SettingsError):
    """custom_config does not describe a usable fraud model; the message names the key and the fix."""


def transformed_name(name: str) -> str:
    return f"{name}_xf"


def vocabulary_name(name: str) -> str:
    return f"{name}_vocab"


PositiveInt = Annotated[int, Field(ge=1, strict=True)]
NonNegative = Annotated[float, Field(ge=0, strict=True)]


class FraudOptions(Settings):
    """Model-specific hyper-parameters (``model.options`` in the YAML); every key is optional."""

    embedding_dim: PositiveInt = 8
    conv_filters: PositiveInt = 32
    conv_kernel_size: PositiveInt = 3
    lstm_units: PositiveInt = 32
    lstm_unroll: StrictBool = True      # a static loop over the short history: faster, and DP vectorized needs it
    attention_units: PositiveInt = 32
    fusion_units: PositiveInt = 32
    # each numeric history step also as (current - step) of its current column: a log ratio for amounts
    relative_history: StrictBool = False
    ensemble_size: PositiveInt = 1      # k networks averaged inside the one model (variance from few frauds)
    loss: Literal["focal", "weighted_bce"] = "focal"
    focal_gamma: NonNegative = 2.0
    focal_alpha: float = Field(default=0.75, gt=0, lt=1, strict=True)  # weight of the positive class in the focal loss
    positive_weight: NonNegative = 10.0  # class weight of frauds with loss "weighted_bce"
    vocabulary_top_k: PositiveInt | None = None  # cap vocabularies of high-cardinality string columns
    time_feature: str | None = "timestamp"  # int64 seconds -> hour of day, day of week
    amount_feature: str = "amount"      # its raw value gives the `amount_band` slice
    log_features: list[str] = ["amount", "distance_from_home_km"]  # noqa: RUF012 - pydantic copies it per instance


class FraudModelSettings(ModelSettings):
    """The common hyper-parameters; ``hidden_units[0]`` sizes the current-transaction encoder."""

    options: FraudOptions = FraudOptions()  # type: ignore[assignment]  # narrows ModelSettings' free-form dict


class SequenceSettings(SequenceLayout):
    """The card history: `length` most-recent-first steps, padded at the end, named `prefix` + column."""

    @model_validator(mode="after")
    def _history_is_complete(self) -> Self:
        for required in (self.mask, self.count, self.seconds_since):
            if required not in self.features:
                raise ValueError(
                    f"features lacks {required!r}; the history needs its mask, count and seconds_since "
                    "features (the ExampleGen always writes them)")
        strange = [name for name in self.features if not name.startswith(self.prefix)]
        if strange:
            raise ValueError(f"features {strange} do not start with the prefix {self.prefix!r}")
        if not self.value_features:
            raise ValueError("features has no per-transaction values (e.g. history_amount); "
                             "the sequence branch would see only padding bookkeeping")
        return self

    @property
    def mask(self) -> str:
        return f"{self.prefix}{MASK}"

    @property
    def count(self) -> str:
        return f"{self.prefix}{COUNT}"

    @property
    def seconds_since(self) -> str:
        return f"{self.prefix}{SECONDS_SINCE}"

    @property
    def value_features(self) -> dict[str, FeatureType]:
        """Per-step values of earlier transactions (history_amount, ...), without the bookkeeping."""
        special = {self.mask, self.count, self.seconds_since}
        return {name: kind for name, kind in self.features.items() if name not in special}

    def base_name(self, name: str) -> str:
        """history_amount -> amount: the current-transaction column the history feature copies."""
        return name[len(self.prefix):]


class FraudSettings(TrainerSettings):
    """What the fraud model needs to know about its data and training, from ``custom_config``."""

    model: FraudModelSettings = FraudModelSettings()
    sequence: SequenceSettings

    error = FraudConfigError

    @field_validator("sequence", mode="before")
    @classmethod
    def _history_is_given(cls, value: object) -> object:
        if value is None:
            raise ValueError("the fraud model needs the card history: add a `sequence_features:` section to the "
                             "config (the AnonymizingExampleGen builds it)")
        return value

    @field_validator("model")
    @classmethod
    def _options_fit_the_columns(cls, model: FraudModelSettings, info: ValidationInfo) -> FraudModelSettings:
        data: DataSettings | None = info.data.get("data")
        if data is None:  # already reported
            return model
        features, options = data.features, model.options
        time = options.time_feature
        if time is not None and time in features and features[time] not in NUMERIC_TYPES:
            raise ValueError(
                f"options.time_feature {time!r} must be an int (seconds) column, "
                f"but data.features says {features[time].value!r}")
        if features.get(options.amount_feature) not in NUMERIC_TYPES:
            raise ValueError(
                f"options.amount_feature {options.amount_feature!r} must be a numeric column "
                f"of data.features (it gives the amount_band slice); columns: {sorted(features)}")
        return model

    @property
    def uses_time(self) -> bool:
        time = self.model.options.time_feature
        return time is not None and time in self.data.features

    @property
    def numeric_features(self) -> list[str]:
        """Current-transaction numbers scaled as they are (the time column is encoded separately)."""
        return [name for name, kind in self.data.features.items()
                if kind in NUMERIC_TYPES and not (self.uses_time and name == self.model.options.time_feature)]

    @property
    def categorical_features(self) -> list[str]:
        return [name for name, kind in self.data.features.items() if kind in CATEGORICAL_TYPES]

    def is_log_scaled(self, name: str) -> bool:
        return name in self.model.options.log_features

    def history_vocabulary(self, name: str) -> str:
        """Vocabulary of a string history feature: the current column's when there is one (shared)."""
        base = self.sequence.base_name(name)
        return vocabulary_name(base if base in self.categorical_features else name)


SETTINGS = FraudSettings  # the schema the pipeline checks this package's config with
