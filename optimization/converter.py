"""SavedModel signature -> TFLite flatbuffer, one variant at a time, trying the documented routes in order.

A signature made only of TFLite builtin ops converts on the ``builtins`` route; one that needs TensorFlow
ops TFLite lacks (TFT's hash buckets, some LSTM graphs) takes the ``select_tf_ops`` route, whose
``Flex*`` ops need the Flex delegate at run time (TF 2.21's pip interpreter does not link it; the
measurement reports such a variant as not runnable, with the interpreter's reason). The route taken is
recorded; when every route fails, the converter's own message is kept as the reason, so nothing is
skipped silently.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optimization.errors import OptimizationError
from optimization.settings import Variant

ROUTE_BUILTINS = "builtins"
ROUTE_SELECT_TF_OPS = "select_tf_ops"
ROUTES = (ROUTE_BUILTINS, ROUTE_SELECT_TF_OPS)


@dataclass
class Conversion:
    """One variant's outcome: the flatbuffer and the route that made it, or every route's failure."""

    variant: Variant
    route: str | None = None
    model: bytes | None = field(default=None, repr=False)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def converted(self) -> bool:
        return self.model is not None

    @property
    def reason(self) -> str:
        """Why the variant could not be converted, route by route, in the converter's words."""
        return "; ".join(f"{route}: {message}" for route, message in self.failures.items())


def representative_dataset(rows: Mapping[str, np.ndarray]) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """The calibration generator full integer quantization needs: one row at a time, by input name."""
    count = len(next(iter(rows.values()))) if rows else 0
    if count == 0:
        raise OptimizationError(
            "the representative dataset for full_int8 is empty; the train split must hold rows with the "
            "signature's inputs (check the data), or drop full_int8 from optimization.variants")

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for index in range(count):
            yield {name: values[index:index + 1] for name, values in rows.items()}

    return generate


def _converter(saved_model_dir: Path, signature: str, variant: Variant, route: str,
               calibration: Callable[[], Iterator[dict[str, np.ndarray]]] | None) -> Any:  # a tf.lite.TFLiteConverter
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[signature])
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if variant is Variant.FULL_INT8 else tf.lite.OpsSet.TFLITE_BUILTINS
    ops = {builtins}
    if route == ROUTE_SELECT_TF_OPS:
        # Full int8 keeps float kernels for what cannot be quantized once TF ops are in the graph anyway.
        ops |= {tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS}
    converter.target_spec.supported_ops = ops
    if variant is not Variant.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant is Variant.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if variant is Variant.FULL_INT8:
        converter.representative_dataset = calibration
    return converter


def convert(saved_model_dir: Path, signature: str, variant: Variant,
            calibration_rows: Mapping[str, np.ndarray] | None = None) -> Conversion:
    """Convert ``signature`` of the SavedModel to ``variant``, builtins first, then with select TF ops."""
    calibration = None
    if variant is Variant.FULL_INT8:
        calibration = representative_dataset(calibration_rows or {})
    outcome = Conversion(variant)
    for route in ROUTES:
        try:
            outcome.model = _converter(saved_model_dir, signature, variant, route, calibration).convert()
        except Exception as exc:  # noqa: BLE001 - the converter's message is the reason we report
            outcome.failures[route] = _first_lines(str(exc) or type(exc).__name__)
            continue
        outcome.route = route
        return outcome
    return outcome


def _first_lines(message: str, limit: int = 600) -> str:
    """The converter's error without its long MLIR location dumps: the per-op verdicts when it gives
    them ("'tf.UnicodeScript' op is neither a custom op nor a flex op"), else its first lines."""
    ops = list(dict.fromkeys(f"'{op}' op {verdict.strip()}"
                             for op, verdict in re.findall(r"'(tf\.\w+)' op ([^<\n]+)", message)))
    text = "; ".join(ops) if ops else " ".join(line.strip() for line in message.strip().splitlines()[:6])
    return text if len(text) <= limit else text[:limit] + " ..."
