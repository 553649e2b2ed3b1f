"""The ``optimization:`` section of a use-case config: which TFLite variants to build and the publish gate.

Plain pydantic (the style of models/common/settings.py), so the pipeline validates it in milliseconds.
"""
from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Variant(str, Enum):
    """TFLite forms of one model, from the plain conversion to full integer quantization."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC_INT8 = "dynamic_int8"
    FULL_INT8 = "full_int8"


class OptimizationSettings(BaseModel):
    """What the ModelOptimizer converts, how it measures, and which variant it may publish."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signature: str = Field(
        default="serving_raw",
        description="the SavedModel signature converted: raw named features in, Transform graph included")
    variants: list[Variant] = Field(
        default=list(Variant), min_length=1,
        description="TFLite variants to build: float32, float16, dynamic_int8, full_int8")
    publish: list[Variant] = Field(
        default=[Variant.DYNAMIC_INT8, Variant.FLOAT16, Variant.FLOAT32],
        description="variants allowed into the version folder as model.tflite, first passing one wins; "
                    "[] measures without publishing")
    max_auc_drop: float = Field(
        default=0.01, ge=0.0, le=1.0,
        description="largest allowed AUC drop (SavedModel - TFLite) on the eval rows for a variant to be published")
    false_positive_rate: float = Field(
        default=0.01, gt=0.0, lt=1.0, description="recall is reported at this false-positive rate")
    representative_examples: int = Field(
        default=100, ge=1, le=10_000,
        description="train-split rows that calibrate full_int8 (the representative dataset)")
    eval_rows: int = Field(default=5_000, ge=1, description="at most this many eval-split rows are scored")
    latency_repeats: int = Field(
        default=30, ge=1, description="timed calls per model and batch size (1 and 64 rows), interleaved")

    @model_validator(mode="after")
    def _publish_from_variants(self) -> OptimizationSettings:
        unbuilt = [v.value for v in self.publish if v not in self.variants]
        if unbuilt:
            raise ValueError(
                f"publish names {unbuilt}, which are not in variants {[v.value for v in self.variants]}; "
                "add them to variants or remove them from publish")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("variants lists a variant twice; name each once")
        return self
