"""What a run_fn tells the pipeline about its training (seed, privacy budget, epochs, strategy).

run_fn cannot touch MLMD; it writes this small JSON beside its logs, and the Trainer executor
copies every entry onto the Model artifact as a custom property, where lineage and compliance
reports read it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping

import tensorflow as tf

RECORD_FILE = "esteira_training_record.json"
Value = int | float | str | bool


def write_training_record(model_run_dir: str, values: Mapping[str, Value]) -> str:
    """Write (or extend) the record in the Trainer's model_run directory; returns the file path."""
    path = os.path.join(model_run_dir, RECORD_FILE)
    record: dict[str, Value] = read_training_record(model_run_dir)
    for key, value in values.items():
        if not isinstance(value, (int, float, str, bool)):
            raise TypeError(f"training record value {key!r} must be int, float, str or bool, not {type(value)}")
        record[key] = value
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(record, sort_keys=True, indent=2))
    return path


def read_training_record(model_run_dir: str) -> dict[str, Value]:
    path = os.path.join(model_run_dir, RECORD_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as handle:
        return json.loads(handle.read())
