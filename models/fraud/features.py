"""The contract between the pipeline config and the fraud model: columns, card history, options.

The pipeline passes these settings to Transform and Trainer through ``custom_config`` (plain JSON),
so this module depends on nothing but the standard library and every mistake is reported here,
before any TensorFlow work, naming the key and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

NUMERIC_TYPES = ("float", "int")
CATEGORICAL_TYPES = ("string",)
FEATURE_TYPES = NUMERIC_TYPES + CATEGORICAL_TYPES
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


class FraudConfigError(ValueError):
    """custom_config does not describe a usable fraud model; the message names the key and the fix."""


def transformed_name(name: str) -> str:
    return f"{name}_xf"


def vocabulary_name(name: str) -> str:
    return f"{name}_vocab"


@dataclass(frozen=True)
class FraudOptions:
    """Model-specific hyper-parameters (``model.options`` in the YAML); every key is optional."""

    embedding_dim: int = 8
    conv_filters: int = 32
    conv_kernel_size: int = 3
    lstm_units: int = 32
    lstm_unroll: bool = True            # a static loop over the short history: faster, and DP vectorized needs it
    attention_units: int = 32
    fusion_units: int = 32
    loss: str = "focal"                 # "focal" or "weighted_bce"
    focal_gamma: float = 2.0
    focal_alpha: float = 0.75           # weight of the positive class in the focal loss
    positive_weight: float = 10.0       # class weight of frauds with loss "weighted_bce"
    vocabulary_top_k: int | None = None  # cap vocabularies of high-cardinality string columns
    time_feature: str | None = "timestamp"  # int64 seconds -> hour of day, day of week
    amount_feature: str = "amount"      # its raw value gives the `amount_band` slice
    log_features: tuple[str, ...] = ("amount", "distance_from_home_km")

    _LOSSES = ("focal", "weighted_bce")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> "FraudOptions":
        options = dict(options or {})
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise FraudConfigError(
                f"model.options has unknown key(s) {unknown}; allowed keys are {allowed}")
        if "log_features" in options:
            value = options["log_features"]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise FraudConfigError(
                    f"model.options.log_features must be a list of column names, got {value!r}")
            options["log_features"] = tuple(value)
        defaults = cls()
        for name in ("embedding_dim", "conv_filters", "conv_kernel_size", "lstm_units",
                     "attention_units", "fusion_units"):
            if name in options:
                options[name] = _positive_int(f"model.options.{name}", options[name])
        if options.get("vocabulary_top_k") is not None:
            options["vocabulary_top_k"] = _positive_int("model.options.vocabulary_top_k",
                                                        options["vocabulary_top_k"])
        for name in ("focal_gamma", "positive_weight"):
            if name in options:
                value = options[name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise FraudConfigError(
                        f"model.options.{name} must be a number >= 0, got {value!r} "
                        f"(default {getattr(defaults, name)})")
                options[name] = float(value)
        if "focal_alpha" in options:
            value = options["focal_alpha"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise FraudConfigError(
                    f"model.options.focal_alpha must be a number in (0, 1), got {value!r} "
                    f"(default {defaults.focal_alpha})")
            options["focal_alpha"] = float(value)
        if "lstm_unroll" in options and not isinstance(options["lstm_unroll"], bool):
            raise FraudConfigError(
                f"model.options.lstm_unroll must be true or false, got {options['lstm_unroll']!r}")
        if "loss" in options and options["loss"] not in cls._LOSSES:
            raise FraudConfigError(
                f"model.options.loss must be one of {list(cls._LOSSES)}, got {options['loss']!r}")
        return cls(**options)

    def to_mapping(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FraudConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class SequenceSettings:
    """The card history: `length` most-recent-first steps, padded at the end, named `prefix` + column."""

    length: int
    prefix: str
    features: dict[str, str]

    @classmethod
    def from_mapping(cls, sequence: Mapping[str, Any] | None) -> "SequenceSettings":
        if not isinstance(sequence, Mapping):
            raise FraudConfigError(
                f"custom_config.sequence is {sequence!r}; the fraud model needs the card history: add a "
                "`sequence_features:` section to the config (the AnonymizingExampleGen builds it)")
        missing = sorted({"length", "prefix", "features"} - set(sequence))
        if missing:
            raise FraudConfigError(
                f"custom_config.sequence lacks {missing}; the pipeline must pass the card-history "
                "layout (length, prefix, features) of the AnonymizingExampleGen")
        length = _positive_int("custom_config.sequence.length", sequence["length"])
        prefix, features = str(sequence["prefix"]), dict(sequence["features"])
        _check_types("custom_config.sequence.features", features)
        settings = cls(length=length, prefix=prefix, features=features)
        for required in (settings.mask, settings.count, settings.seconds_since):
            if required not in features:
                raise FraudConfigError(
                    f"custom_config.sequence.features lacks {required!r}; the history needs its "
                    "mask, count and seconds_since features (the ExampleGen always writes them)")
        strange = [name for name in features if not name.startswith(prefix)]
        if strange:
            raise FraudConfigError(
                f"custom_config.sequence.features {strange} do not start with the prefix {prefix!r}")
        return settings

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
    def value_features(self) -> dict[str, str]:
        """Per-step values of earlier transactions (history_amount, ...), without the bookkeeping."""
        special = {self.mask, self.count, self.seconds_since}
        return {name: kind for name, kind in self.features.items() if name not in special}

    def base_name(self, name: str) -> str:
        """history_amount -> amount: the current-transaction column the history feature copies."""
        return name[len(self.prefix):]

    def to_mapping(self) -> dict[str, Any]:
        return {"length": self.length, "prefix": self.prefix, "features": dict(self.features)}


def _check_types(key: str, features: Mapping[str, Any]) -> None:
    bad = {name: kind for name, kind in features.items() if kind not in FEATURE_TYPES}
    if bad:
        raise FraudConfigError(f"{key} has unknown type(s) {bad}; use one of {list(FEATURE_TYPES)}")


@dataclass(frozen=True)
class FraudSettings:
    """What the fraud model needs to know about its data and training, from ``custom_config``."""

    label: str
    features: dict[str, str]
    sequence: SequenceSettings
    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 256
    seed: int = 42
    options: FraudOptions = field(default_factory=FraudOptions)
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = ("label", "features", "sequence", "hidden_units", "dropout", "learning_rate",
              "batch_size", "seed", "options")

    @classmethod
    def from_custom_config(cls, config: Mapping[str, Any]) -> "FraudSettings":
        missing = sorted({"label", "features", "sequence"} - set(config))
        if missing:
            raise FraudConfigError(
                f"custom_config lacks {missing}; the pipeline must pass them to Transform and Trainer")
        features = dict(config["features"])
        _check_types("custom_config.features (data.features)", features)
        if not features:
            raise FraudConfigError("custom_config.features is empty; list the current-transaction columns")
        values: dict[str, Any] = {key: config[key] for key in cls._KNOWN if key in config}
        values["features"] = features
        values["sequence"] = SequenceSettings.from_mapping(config["sequence"])
        values["options"] = FraudOptions.from_mapping(config.get("options"))
        if "hidden_units" in values:
            values["hidden_units"] = tuple(values["hidden_units"])
            if not values["hidden_units"]:
                raise FraudConfigError("model.hidden_units is empty; give at least one layer size")
        settings = cls(**values, extra={k: v for k, v in config.items() if k not in cls._KNOWN})
        settings._check()
        return settings

    def _check(self) -> None:
        if self.label in self.features:
            raise FraudConfigError(f"label {self.label!r} is also a feature; remove it from data.features")
        time = self.options.time_feature
        if time is not None and time in self.features and self.features[time] not in NUMERIC_TYPES:
            raise FraudConfigError(
                f"model.options.time_feature {time!r} must be an int (seconds) column, "
                f"but data.features says {self.features[time]!r}")
        if self.features.get(self.options.amount_feature) not in NUMERIC_TYPES:
            raise FraudConfigError(
                f"model.options.amount_feature {self.options.amount_feature!r} must be a numeric column "
                f"of data.features (it gives the amount_band slice); columns: {sorted(self.features)}")
        if not self.sequence.value_features:
            raise FraudConfigError(
                "custom_config.sequence.features has no per-transaction values (e.g. history_amount); "
                "the sequence branch would see only padding bookkeeping")

    def to_custom_config(self) -> dict[str, Any]:
        return {"label": self.label, "features": dict(self.features),
                "sequence": self.sequence.to_mapping(), "hidden_units": list(self.hidden_units),
                "dropout": self.dropout, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size, "seed": self.seed,
                "options": self.options.to_mapping(), **self.extra}

    @property
    def uses_time(self) -> bool:
        return self.options.time_feature is not None and self.options.time_feature in self.features

    @property
    def numeric_features(self) -> list[str]:
        """Current-transaction numbers scaled as they are (the time column is encoded separately)."""
        return [name for name, kind in self.features.items()
                if kind in NUMERIC_TYPES and not (self.uses_time and name == self.options.time_feature)]

    @property
    def categorical_features(self) -> list[str]:
        return [name for name, kind in self.features.items() if kind in CATEGORICAL_TYPES]

    def is_log_scaled(self, name: str) -> bool:
        return name in self.options.log_features

    def history_vocabulary(self, name: str) -> str:
        """Vocabulary of a string history feature: the current column's when there is one (shared)."""
        base = self.sequence.base_name(name)
        return vocabulary_name(base if base in self.categorical_features else name)
