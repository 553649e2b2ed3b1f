"""Train a small Keras model in its own process; used by the determinism and resume tests.

Writes a JSON report (and the final weights as .npz) so the test process can compare runs.
With --block-after-epoch K the process stops making progress after epoch K has been backed up
and prints "EPOCH_DONE K", so the test can SIGKILL it at a known point.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import time

import numpy as np
import tensorflow as tf

from models.common.checkpointing import ResumableBackup, remove_backup
from models.common.determinism import make_deterministic
from models.common.dp import compile_dp_model
from models.common.settings import DPSettings

EXAMPLES, FEATURES, BATCH = 512, 8, 32


class BlockAfterEpoch(tf.keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.epoch:
            print(f"EPOCH_DONE {self.epoch}", flush=True)
            time.sleep(600)  # the test kills the process here


class RecordStart(tf.keras.callbacks.Callback):
    """The optimizer step counter as restored, read from the model when training begins."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.steps_at_start = int(self.model.optimizer.iterations.numpy())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backup-dir")
    parser.add_argument("--block-after-epoch", type=int)
    parser.add_argument(
        "--also-dp", choices=["fast", "vectorized", "microbatch"],
        help="afterwards, re-seed and train again with DP-SGD; weights go to <out>.dp.npz",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    make_deterministic(args.seed)
    data = _data()
    model = _model(dp=None)

    callbacks: list[tf.keras.callbacks.Callback] = []
    backup = ResumableBackup(args.backup_dir) if args.backup_dir else None
    if backup:
        callbacks.append(backup)
    record = RecordStart()
    callbacks.append(record)
    if args.block_after_epoch:
        callbacks.append(BlockAfterEpoch(args.block_after_epoch))

    history = model.fit(data, epochs=args.epochs, callbacks=callbacks, verbose=0)
    if backup:  # the run_fn order: save the model, then drop the backup
        model.save(os.path.join(os.path.dirname(args.out), "model"), include_optimizer=False)
        remove_backup(args.backup_dir)

    np.savez(args.out + ".npz", *model.get_weights())
    resumed = backup.resumed_from if backup else None
    report = {
        "epochs_run": history.epoch,
        "steps_at_start": record.steps_at_start,
        "steps_at_end": int(model.optimizer.iterations.numpy()),
        "steps_per_epoch": EXAMPLES // BATCH,
        "resumed_from": None if resumed is None else vars(resumed),
    }
    with open(args.out, "w") as f:
        json.dump(report, f)

    if args.also_dp:
        make_deterministic(args.seed)
        dp_model = _model(dp=args.also_dp)
        dp_model.fit(_data(), epochs=args.epochs, verbose=0)
        np.savez(args.out + ".dp.npz", *dp_model.get_weights())


def _data() -> tf.data.Dataset:
    rng = np.random.default_rng(2024)  # the data is fixed; only the seed varies
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype("float32")
    y = (x[:, :1] + 0.5 * x[:, 1:2] > 0).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(EXAMPLES).batch(BATCH, drop_remainder=True)


def _model(dp: str | None) -> tf.keras.Model:
    inputs = tf.keras.Input(shape=(FEATURES,))
    hidden = tf.keras.layers.Dense(16, activation="relu")(inputs)
    hidden = tf.keras.layers.Dropout(0.2)(hidden)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation="sigmoid")(hidden))
    if dp:
        return compile_dp_model(
            model, DPSettings(l2_norm_clip=1.0, noise_multiplier=1.0, clipping=dp),
            optimizer=tf.keras.optimizers.Adam(0.01), loss=tf.keras.losses.BinaryCrossentropy(),
        )
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    return model


if __name__ == "__main__":
    main()
