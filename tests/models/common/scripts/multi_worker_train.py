"""One worker of a MultiWorkerMirroredStrategy training of the tabular model; TF_CONFIG names the
cluster and the task.

Both workers use the same configured seed (identical shuffles, so sharding partitions the
data), then `reseed_model_ops` gives each its own op seeds: identical final weights then come
from the strategy (initial values broadcast from the chief, gradients all-reduced), not from
identical random draws. Each worker also records one random draw before and after re-seeding.
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import shutil

import numpy as np
import tensorflow as tf

from models.common.determinism import make_deterministic, reseed_model_ops
from models.common.strategy import build_strategy, is_chief, worker_output_dir
from models.tabular.features import TabularSettings, transformed_name
from models.tabular.network import build_model

FEATURES = [f"f{i}" for i in range(8)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    task = json.loads(os.environ["TF_CONFIG"])["task"]

    strategy = build_strategy("multi_worker")
    seed = make_deterministic(7)
    draw_same_seed = tf.random.normal([4]).numpy().tolist()  # what one seed alone gives

    make_deterministic(seed)  # the run_fn order: seed, input pipeline, re-seed, model
    rng = np.random.default_rng(2024)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, :1] - x[:, 2:3] > 0).astype("float32")
    inputs = {transformed_name(name): x[:, i:i + 1] for i, name in enumerate(FEATURES)}
    data = tf.data.Dataset.from_tensor_slices((inputs, y)).shuffle(256).batch(32)
    reseed_model_ops(seed, strategy)
    draw_reseeded = tf.random.normal([4]).numpy().tolist()

    settings = TabularSettings(data={"label": "y", "features": dict.fromkeys(FEATURES, "float")},
                               model={"hidden_units": [16, 8], "dropout": 0.0}, training={"seed": seed})
    with strategy.scope():
        model = build_model(settings, vocabulary_sizes={})  # the pipeline's tabular model
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy")
        initial = [w.copy() for w in model.get_weights()]
    history = model.fit(data, epochs=args.epochs, verbose=0)

    target = os.path.join(args.out, "model")
    saved_to = worker_output_dir(target, strategy)
    model.save(saved_to, include_optimizer=False)  # every worker must take part
    if saved_to != target:
        shutil.rmtree(os.path.dirname(saved_to))

    np.savez(os.path.join(args.out, f"worker{task['index']}.npz"), *model.get_weights())
    report = {
        "replicas": strategy.num_replicas_in_sync,
        "chief": is_chief(strategy),
        "epochs": history.epoch,
        "draw_same_seed": draw_same_seed,
        "draw_reseeded": draw_reseeded,
        "moved": any(not np.array_equal(a, b) for a, b in zip(initial, model.get_weights(), strict=True)),
    }
    with open(os.path.join(args.out, f"worker{task['index']}.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
