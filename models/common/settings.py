"""The settings contract between a use case's config and its model code, declared once.

The pipeline validates the YAML into these models (``pipeline/config.py`` composes them), serialises
them into the ``custom_config`` TFX hands Transform and Trainer, and every model's
``preprocessing_fn`` and ``run_fn`` read it back through the same models. Each setting, its default
and its check therefore live here and nowhere else; a model package extends `ModelSettings` and
`TrainerSettings` with its own options (``<package>.features.SETTINGS``), which the config loader
checks too, so a bad option stops the run before any TFX work. Plain pydantic, no TensorFlow or
TFX, so the pipeline imports it in milliseconds.

``custom_config`` mirrors the YAML sections: ``data`` (label, features), ``model``, ``training``
(without the step counts, which TFX passes as TrainArgs/EvalArgs) and ``sequence`` (the card-history
layout the anonymizing ExampleGen writes, or null).
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from errors import EsteiraError


class SettingsError(EsteiraError, ValueError):
    """Settings that cannot train a model; the message names the key and what is allowed."""


class Settings(BaseModel):
    """A section of settings: unknown keys are refused, values are immutable once checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureType(str, Enum):
    FLOAT = "float"
    INT = "int"
    STRING = "string"


NUMERIC_TYPES = (FeatureType.FLOAT, FeatureType.INT)
CATEGORICAL_TYPES = (FeatureType.STRING,)


class DataSettings(Settings):
    """The columns a model reads: a binary label and typed features."""

    label: str = Field(description="binary label column (0/1)")
    features: dict[str, FeatureType] = Field(
        description="feature column -> float | int | string (with a privacy policy: its output columns "
                    "and history features)")

    @field_validator("features")
    @classmethod
    def _features_not_empty(cls, value: dict[str, FeatureType]) -> dict[str, FeatureType]:
        if not value:
            raise ValueError("list at least one feature column")
        return value

    @model_validator(mode="after")
    def _label_is_not_a_feature(self) -> Self:
        if self.label in self.features:
            raise ValueError(f"label '{self.label}' is also listed in features; remove it from features")
        return self


HISTORY_GROUP = "card_history"  # the card history's one attribution (all its steps and columns together)


class ReasonText(Settings):
    """The reason code a data subject reads for one feature, in either direction of its attribution."""

    raises: str = Field(min_length=1, description="when the feature pushed the score up, e.g. 'amount far above "
                                                  "the amounts this model sees as usual'")
    lowers: str = Field(min_length=1, description="when the feature pushed the score down")


class ExplainSettings(Settings):
    """The ``explain`` signature every model exports (models/common/explain.py): integrated gradients of the
    score per raw feature, over a fixed number of quadrature nodes, so its cost is bounded by the model."""

    steps: int = Field(default=32, ge=2, le=64,
                       description="Gauss-Legendre nodes on the integrated-gradients path; cost grows with them")
    top_k: int = Field(default=3, ge=1, le=20, description="reason codes named per decision")
    reasons: dict[str, ReasonText] = Field(
        default={}, description="raw feature (or card_history) -> {raises, lowers}: readable reason codes; "
                                "a feature without one is named as it is")


class ModelSettings(Settings):
    """Hyper-parameters every model package reads; ``options`` is the package's own (see its SETTINGS)."""

    hidden_units: list[int] = Field(
        default=[32, 16], min_length=1,
        description="dense layer sizes (tabular: the stack; fraud: current-transaction encoder, then the "
                    "layers after the fusion)")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    # 32 is the default every config without the key has trained with (the pipeline always sent it);
    # the fraud config sets 256, the batch of its recorded benchmarks (benchmarks/training).
    batch_size: int = Field(default=32, ge=1)
    options: dict[str, Any] = Field(default={}, description="model-specific settings, checked by the model")
    explain: ExplainSettings = ExplainSettings()

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, value: list[int]) -> list[int]:
        if any(units < 1 for units in value):
            raise ValueError("every layer needs at least 1 unit")
        return value


class DistributionSettings(Settings):
    """How many replicas train; the same config scales from a laptop to GPUs or several workers."""

    strategy: Literal["none", "mirrored", "multi_worker"] = "none"
    num_replicas: int = Field(default=1, ge=1, description="mirrored: devices (logical CPUs without GPUs)")

    @model_validator(mode="after")
    def _replicas_need_mirrored(self) -> Self:
        if self.num_replicas > 1 and self.strategy != "mirrored":
            raise ValueError("num_replicas > 1 needs strategy: mirrored (multi_worker takes its size from TF_CONFIG)")
        return self


ClippingMethod = Literal["fast", "vectorized", "microbatch"]
CLIPPING_METHODS: tuple[str, ...] = get_args(ClippingMethod)


class DPSettings(Settings):
    """DP-SGD: per-example clipping plus Gaussian noise, with the privacy budget checked."""

    model_config = ConfigDict(allow_inf_nan=False)

    enabled: bool = False
    l2_norm_clip: float = Field(default=1.0, gt=0, description="clip norm C of each example's gradient")
    noise_multiplier: float = Field(
        default=1.1, ge=0, description="noise std / C; 0 clips without noise and gives no privacy guarantee")
    clipping: ClippingMethod = Field(
        default="fast", description="fast: Dense/Embedding models only; vectorized: any layer; microbatch: slowest")
    num_microbatches: int | None = Field(
        default=None, ge=1, description="microbatch only: clipping groups per global batch (default: one per example)")
    jit_compile: bool = Field(
        default=True, description="vectorized: compile per-example gradients with XLA (faster; needed for LSTMs)")
    delta: float = Field(default=1e-5, gt=0, lt=1)
    max_epsilon: float = Field(default=10.0, gt=0, description="the Trainer fails if epsilon would exceed it")
    accountant: Literal["rdp", "pld"] = "rdp"

    @model_validator(mode="after")
    def _microbatches_need_microbatch(self) -> Self:
        if self.num_microbatches is not None and self.clipping != "microbatch":
            raise ValueError(f"num_microbatches is only used by clipping='microbatch', not {self.clipping!r}; "
                             "remove it or switch the method")
        return self


Autotune = Literal["autotune"]


class InputSettings(Settings):
    """The Trainer's tf.data pipeline (models/common/input_pipeline.py); 'autotune' lets tf.data choose."""

    cache: Literal["memory", "off"] = Field(
        default="memory", description="memory: read and map once, later epochs from RAM; off: stream every epoch")
    shuffle_buffer: int = Field(default=10_000, ge=1, description="examples in the shuffle buffer")
    parallel_reads: int | Autotune = Field(default="autotune", description="files read in parallel")
    parallel_calls: int | Autotune = Field(default="autotune", description="parse/map/batch threads")
    prefetch: int | Autotune = Field(default="autotune", description="batches prepared ahead")
    deterministic: bool = Field(default=True, description="order fixed by the seed; false trades it for speed")

    @field_validator("parallel_reads", "parallel_calls", "prefetch")
    @classmethod
    def _positive_or_autotune(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:  # the field's type leaves only "autotune" otherwise
            raise ValueError(f"must be >= 1 or 'autotune', got {value}")
        return value


class TrainingSettings(Settings):
    """How run_fn trains; the step counts are the pipeline's (TFX hands them over as TrainArgs/EvalArgs)."""

    epochs: int = Field(default=1, ge=1, description="train_steps are split into this many epochs (backups per epoch)")
    seed: int = Field(default=42, ge=0)
    distribution: DistributionSettings = DistributionSettings()
    dp: DPSettings = DPSettings()
    input: InputSettings = InputSettings()
    backup_root: Path | None = Field(
        default=None, description="stable folder for resumable backups (default: <pipeline.root>/_trainer_backups)")
    debug_numerics: bool = Field(default=False, description="tf.debugging.enable_check_numerics (slow)")
    histogram_freq: int = Field(default=1, ge=0, description="TensorBoard weight histograms every N epochs (0: off)")


def check_steps_cover_epochs(train_steps: int, epochs: int) -> None:
    """Every epoch needs at least one step (the pipeline checks the config, run_fn the TrainArgs)."""
    if train_steps < epochs:
        raise ValueError(f"train_steps ({train_steps}) must be at least epochs ({epochs})")


class SequenceLayout(Settings):
    """Card history written by the anonymizing ExampleGen: ``length`` steps named ``prefix`` + column."""

    length: int = Field(ge=1)
    prefix: str
    features: dict[str, FeatureType] = Field(description="history feature -> type, bookkeeping included")


class TrainerSettings(Settings):
    """Everything preprocessing_fn and run_fn read, exactly as the pipeline sends it in custom_config."""

    data: DataSettings
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    sequence: SequenceLayout | None = None
    # evaluation.decision_threshold, carried into the SavedModel so the server's class rule is the Evaluator's
    decision_threshold: float = Field(default=0.5, ge=0.0, le=1.0,
                                      description="a score above it is an alert (evaluation.decision_threshold)")

    error: ClassVar[type[SettingsError]] = SettingsError

    @model_validator(mode="after")
    def _reasons_name_explained_features(self) -> Self:
        explained = [*self.data.features, *([HISTORY_GROUP] if self.sequence is not None else [])]
        unknown = sorted(set(self.model.explain.reasons) - set(explained))
        if unknown:
            raise ValueError(f"model.explain.reasons names {unknown}, which the model does not read; name one of "
                             f"{explained}")
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None, source: str) -> Self:
        """Validate ``data``; a problem raises ``cls.error`` as '<source>: <key>: <what is wrong>'."""
        if not isinstance(data, Mapping):
            raise cls.error(f"{source}: expected a mapping of {', '.join(cls.model_fields)}, got {data!r}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as error:
            raise cls.error(f"{source}: {describe_validation_error(error, cls)}") from None

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> Self:
        """Read the settings back in preprocessing_fn or run_fn."""
        return cls.parse(custom_config, source="custom_config")

    def to_custom_config(self) -> dict[str, Any]:
        """Plain JSON, as TFX stores custom_config."""
        return self.model_dump(mode="json")


def settings_schema(package: str) -> type[TrainerSettings]:
    """The schema a model package reads its custom_config with: ``<package>.features.SETTINGS``.

    A package without one (a user's own) gets the common schema, its ``options`` unchecked.
    """
    if _find(package) is None:
        raise SettingsError(f"model.module: package '{package}' not found; use models.tabular, models.fraud "
                            "or an importable package with preprocessing.preprocessing_fn and model.run_fn")
    if _find(f"{package}.features") is None:
        return TrainerSettings
    schema = getattr(importlib.import_module(f"{package}.features"), "SETTINGS", TrainerSettings)
    if not (isinstance(schema, type) and issubclass(schema, TrainerSettings)):
        raise SettingsError(f"model.module: {package}.features.SETTINGS must be a TrainerSettings subclass")
    return schema


def _find(module: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a missing parent package, or a plain module where a package was named
        return None


def describe_validation_error(error: ValidationError, root: type[BaseModel]) -> str:
    """The first problem as '<dotted key>: <message>', naming the allowed keys for an unknown one."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    kind, message = first["type"], first["msg"]
    if kind == "extra_forbidden":
        message = f"unknown key; allowed here: {', '.join(_allowed_keys(root, first['loc'][:-1]))}"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "enum":
        message = f"{message} (got {first.get('input')!r})"
    elif "input" in first and not isinstance(first["input"], (dict, list)):
        message = f"{message} (got {first['input']!r})"
    more = len(error.errors()) - 1
    suffix = f" [+{more} more error{'s' if more > 1 else ''}]" if more else ""
    return f"{key}: {message}{suffix}"


def _allowed_keys(root: type[BaseModel], parent: tuple[Any, ...]) -> list[str]:
    model = root
    for part in parent:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        candidates = [annotation, *get_args(annotation)]  # `Section | None` as well as `Section`
        sections = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not sections:
            return []
        model = sections[0]
    return list(model.model_fields)
