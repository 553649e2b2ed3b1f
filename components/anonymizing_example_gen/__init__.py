"""An ExampleGen that applies the privacy policy while reading raw CSV, plus card-history features.

`AnonymizingExampleGen` is imported on first use: the Beam and history modules stay importable
without TensorFlow and TFX (their tests run in seconds).
"""
from typing import Any

from components.anonymizing_example_gen.feature_settings import SequenceFeaturesConfig

__all__ = ["AnonymizingExampleGen", "SequenceFeaturesConfig"]


def __getattr__(name: str) -> Any:
    if name == "AnonymizingExampleGen":
        from components.anonymizing_example_gen.component import AnonymizingExampleGen

        return AnonymizingExampleGen
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
