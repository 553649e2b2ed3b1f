"""TFX's Transform executor with a fixed analyzer batch size, so a rerun on the same data is bit-identical.

Left to itself, TFX's Transform lets Beam's ``BatchElements`` size the record batches its analyzers see
from how long each batch took (1, 1, 2, 4, ... rows while batches run fast, smaller steps when the machine
is loaded), so batch boundaries follow the load. The analyzers' float32 partial sums (the mean and
variance behind every z-score) then round differently from run to run: two runs on the same rows gave
analyzer constants and transformed features 1-3 ULPs apart, hence different trained weights, and the
Pusher published the same data's model again as a new version. With every batch the same size, the
reduction order is the data's order, and the same rows give the same transform and the same model.

TFX's ``Executor.Do`` hands the work to a ``TransformProcessor`` it builds by its module-level name, and
the batch size is the processor's ``_GetDesiredBatchSize`` (overriding it on the executor has no effect),
so ``Do`` runs with that name bound to our processor.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.transform import executor as tfx_transform

# tfx_bsl's cap on adaptive batches (the size Beam's tuning reaches on any sizeable split): the same
# throughput without the ramp from one row.
ANALYZER_BATCH_SIZE = 1000


class ReproducibleTransformProcessor(tfx_transform.TransformProcessor):
    """Every record batch of ``ANALYZER_BATCH_SIZE`` rows unless TFX needs its own (sequence examples: 1)."""

    def _GetDesiredBatchSize(self, data_format: int, schema: schema_pb2.Schema) -> int:
        return super()._GetDesiredBatchSize(data_format, schema) or ANALYZER_BATCH_SIZE


@contextmanager
def _processor(processor: type[tfx_transform.TransformProcessor]) -> Iterator[None]:
    """TFX's executor module builds ``processor`` while this lasts."""
    original = tfx_transform.TransformProcessor
    tfx_transform.TransformProcessor = processor
    try:
        yield
    finally:
        tfx_transform.TransformProcessor = original


class ReproducibleTransformExecutor(tfx_transform.Executor):
    """TFX's Transform with ``ReproducibleTransformProcessor``'s fixed batches."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        with _processor(ReproducibleTransformProcessor):
            super().Do(input_dict, output_dict, exec_properties)
