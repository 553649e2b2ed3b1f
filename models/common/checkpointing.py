"""Resume after failure: Keras `BackupAndRestore` in a directory that survives re-executions.

TFX gives every Trainer execution a new output directory, so a backup kept there is never found
again. `backup_dir_for(root, key)` derives a stable directory from a key the caller builds from
whatever must match for a resume to be valid (pipeline name, data fingerprint, model and
training config). A re-run with the same key resumes after the last completed epoch; a changed
key starts afresh. Under MultiWorkerMirroredStrategy `root` must be storage every worker sees.

Order in `run_fn`: `read_backup_state` (optional, to log what will resume), `fit(callbacks=
[ResumableBackup(dir), ...])`, save the model, then `remove_backup(dir)`. Removing only after
the model is saved means a failure during export still resumes instead of retraining.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

# Where tf.keras's BackupAndRestore keeps the chief's checkpoints, and its counters' keys.
_CHIEF_SUBDIR = "chief"
_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
_STEPS_KEY = "train_counter/.ATTRIBUTES/VARIABLE_VALUE"


@dataclass(frozen=True)
class BackupState:
    """What a backup holds: epochs fully completed and optimizer steps taken so far."""

    epochs_completed: int
    steps: int


def backup_dir_for(root: str, key: str) -> str:
    """A stable backup directory under `root` for `key` (a digest, so any text is safe)."""
    if not key:
        raise ValueError("The backup key must be a non-empty string.")
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(root, digest)


def read_backup_state(backup_dir: str) -> BackupState | None:
    """The counters stored in the latest backup in `backup_dir`, or None if there is none."""
    latest = tf.train.latest_checkpoint(os.path.join(backup_dir, _CHIEF_SUBDIR))
    if latest is None:
        return None
    reader = tf.train.load_checkpoint(latest)
    epoch_index = int(reader.get_tensor(_EPOCH_KEY))
    return BackupState(epochs_completed=epoch_index + 1, steps=int(reader.get_tensor(_STEPS_KEY)))


class ResumableBackup(tf.keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` at every epoch end that records what it resumed from.

    `resumed_from` is the `BackupState` restored when training began (None for a fresh start).
    The backup is kept after `fit` returns; call `remove_backup` once the model is saved.
    """

    def __init__(self, backup_dir: str) -> None:
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.resumed_from: BackupState | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.resumed_from = read_backup_state(self.backup_dir)
        super().on_train_begin(logs)


def remove_backup(backup_dir: str) -> None:
    """Delete the backup after a successful training and export; a missing one is fine."""
    if tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)
