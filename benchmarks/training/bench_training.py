"""Training throughput: non-DP vs each DP-SGD clipping method, and mirrored on 1 vs 2 devices.

One process, one data set, one small dense model (30 features → 64 → 64 → 1, the size of the
tabular use case), batch 256. Every configuration is built first; then the timed epochs run
round-robin (config A, B, C, ..., A, B, C, ...) so that load from other work on this machine
spreads over all of them, and the median epoch is reported. Tracing and warm-up are excluded.
An input-only row iterates the same tf.data pipeline without training, to show that input is
not the bottleneck. Writes results.json and results.csv next to this file.

    python benchmarks/training/bench_training.py [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import csv  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from models.common.strategy import configure_logical_cpus  # noqa: E402

configure_logical_cpus(2)  # before TensorFlow initialises its devices

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from models.common.dp import DPConfig, compile_dp_model  # noqa: E402

FEATURES, BATCH, EXAMPLES = 30, 256, 16384
METHODS = ("non-dp", "fast", "vectorized", "microbatch")


class EpochTimer(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def dataset() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype("float32")
    y = (x[:, :3].sum(axis=1, keepdims=True) > 0).astype("float32")
    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .cache()
        .shuffle(EXAMPLES, seed=0)
        .repeat()
        .batch(BATCH, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def build(method: str, strategy: tf.distribute.Strategy) -> tf.keras.Model:
    with strategy.scope():
        inputs = tf.keras.Input(shape=(FEATURES,))
        hidden = tf.keras.layers.Dense(64, activation="relu")(inputs)
        hidden = tf.keras.layers.Dense(64, activation="relu")(hidden)
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(hidden))
        loss = tf.keras.losses.BinaryCrossentropy(from_logits=True)
        if method == "non-dp":
            model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss=loss)
            return model
        return compile_dp_model(
            model,
            DPConfig(l2_norm_clip=1.0, noise_multiplier=1.1, clipping=method),
            optimizer=tf.keras.optimizers.Adam(1e-3),
            loss=loss,
        )


def input_only(data: tf.data.Dataset, steps: int, rounds: int) -> float:
    iterator = iter(data)
    for _ in range(steps):  # warm-up: fills the cache
        next(iterator)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        times.append(time.perf_counter() - start)
    return steps * BATCH / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per configuration")
    args = parser.parse_args()
    tf.keras.utils.set_random_seed(0)
    data = dataset()

    strategies = {
        "none": tf.distribute.get_strategy(),
        "mirrored-1": tf.distribute.MirroredStrategy(["/cpu:0"]),
        "mirrored-2": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    }
    configs = [(s, m) for s in strategies for m in METHODS]
    models, timers = {}, {}
    for strategy_name, method in configs:
        model = build(method, strategies[strategy_name])
        model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # trace and warm up
        models[strategy_name, method], timers[strategy_name, method] = model, EpochTimer()

    seconds: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for config in configs:
            timer = timers[config]
            models[config].fit(data, epochs=1, steps_per_epoch=args.steps, callbacks=[timer], verbose=0)
            seconds[config].append(timer.seconds)

    rows = []
    for strategy_name, method in configs:
        median = statistics.median(seconds[strategy_name, method])
        baseline = statistics.median(seconds[strategy_name, "non-dp"])
        rows.append(
            {
                "strategy": strategy_name,
                "method": method,
                "replicas": strategies[strategy_name].num_replicas_in_sync,
                "examples_per_sec": round(args.steps * BATCH / median, 1),
                "epoch_time_vs_non_dp": round(median / baseline, 2),
                "epoch_seconds": [round(s, 4) for s in seconds[strategy_name, method]],
            }
        )
    rows.append(
        {
            "strategy": "input-only",
            "method": "tf.data cache+shuffle+batch+prefetch",
            "replicas": 0,
            "examples_per_sec": round(input_only(data, args.steps, args.rounds), 1),
            "epoch_time_vs_non_dp": None,
            "epoch_seconds": None,
        }
    )

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/training/bench_training.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "model": f"dense {FEATURES}-64-64-1, batch {BATCH}, Adam; DP: C=1.0, z=1.1",
        "steps_per_epoch": args.steps,
        "rounds": args.rounds,
    }
    (HERE / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    with open(HERE / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "epoch_seconds"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in writer.fieldnames})
    print(json.dumps(meta, indent=2))
    for row in rows:
        print(f"{row['strategy']:>11} {row['method']:>12} {row['examples_per_sec']:>10} ex/s "
              f"{row['epoch_time_vs_non_dp'] or '':>6}x")


if __name__ == "__main__":
    main()
