"""TFX's Transform executor with a fixed analyzer batch size, so a rerun on the same data is bit-identical.

Left to itself, TFX's Transform lets Beam's ``BatchElements`` size the record batches its analyzers see
from how long each batch took, so batch boundaries follow the machine's load. The analyzers' float32
partial sums (the mean and variance behind every z-score) then round differently from run to run: two
runs on the same rows gave transformed features 1-3 ULPs apart, hence different trained weights, and the
Pusher published the same data's model again as a new version. With every batch the same size, the
reduction order is the data's order, and the same rows give the same transform and the same model.
"""
from __future__ import annotations

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.transform import executor as tfx_transform

# tfx_bsl's cap on adaptive batches (the size Beam's tuning reaches on any sizeable split): the same
# throughput without the ramp from one row.
ANALYZER_BATCH_SIZE = 1000


class ReproducibleTransformExecutor(tfx_transform.Executor):
    """Every record batch of ``ANALYZER_BATCH_SIZE`` rows unless TFX needs its own (sequence examples: 1)."""

    def _GetDesiredBatchSize(self, data_format: int, schema: schema_pb2.Schema) -> int:
        return super()._GetDesiredBatchSize(data_format, schema) or ANALYZER_BATCH_SIZE
