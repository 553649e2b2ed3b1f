"""What a pushed version scores on recorded examples: the eval rows of an Examples artifact, the version's
SavedModel (where the Pusher put it, or its archived copy) and the scores of its serving signature.

The drift report's prediction shift and the console's score and calibration charts score the same rows
the same way through these functions, so two versions are compared on the very same examples.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ml_metadata.proto import metadata_store_pb2 as mpb

from evidence import lineage, records

PREDICTION_SAMPLE = 2000
EVAL_SPLIT = "eval"


def serialized_examples(examples: mpb.Artifact, split: str = EVAL_SPLIT, limit: int = PREDICTION_SAMPLE) -> list[bytes]:
    """The first ``limit`` serialized tf.Examples of a split (ExampleGen writes gzipped TFRecords)."""
    import tensorflow as tf

    files = sorted(str(p) for p in (Path(examples.uri) / f"Split-{split}").glob("*"))
    if not files:
        raise lineage.LineageError(f"split {split!r} of the Examples at {examples.uri} holds no files")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [record.numpy() for record in dataset]


def model_directory(pushed: mpb.Artifact) -> Path:
    """The pushed version's SavedModel: where the Pusher published it, else the Pusher's archived copy."""
    push = records.PushRecord.of(pushed)
    destination = Path(push.destination)
    if (destination / "saved_model.pb").is_file():
        return destination
    if (Path(pushed.uri) / "saved_model.pb").is_file():
        return Path(pushed.uri)  # the Pusher's archived copy
    raise lineage.LineageError(f"the SavedModel of version {push.version or None} is gone from {destination} "
                               f"and {pushed.uri}")


def predict_scores(model_dir: Path, rows: list[bytes], batch: int = 256) -> np.ndarray:
    """Scores of the serving signature (the one TF Serving answers by default) on serialized examples."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    outputs = []
    for start in range(0, len(rows), batch):
        result = signature(examples=tf.constant(rows[start:start + batch]))
        tensor = result["probability"] if "probability" in result else next(iter(result.values()))
        outputs.append(np.asarray(tensor).reshape(len(rows[start:start + batch]), -1)[:, -1])
    return np.concatenate(outputs) if outputs else np.zeros(0)
