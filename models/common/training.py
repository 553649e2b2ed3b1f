"""One production training loop for every use case's run_fn.

It composes the pieces of models/common in the order they must run (strategy, seeds, privacy
pre-flight, model in scope, guarded and resumable fit, privacy check on the steps actually taken,
export once per cluster, backup removal) so a model module only says how to build its model,
its datasets and its signatures.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import absl.logging
import tensorflow as tf

from models.common import callbacks, checkpointing, determinism, dp, privacy_accounting
from models.common import strategy as strategy_lib
from models.common.settings import (
    DPSettings,
    ModelSettings,
    TrainerSettings,
    TrainingSettings,
    check_steps_cover_epochs,
)
from models.common.training_record import Value, write_training_record


@dataclass(frozen=True)
class TrainingPlan:
    """A model's settings (read from custom_config) plus the step budget from TFX's TrainArgs."""

    settings: TrainerSettings
    train_steps: int

    def __post_init__(self) -> None:
        check_steps_cover_epochs(self.train_steps, self.training.epochs)

    @property
    def model(self) -> ModelSettings:
        return self.settings.model

    @property
    def training(self) -> TrainingSettings:
        return self.settings.training

    @property
    def dp(self) -> DPSettings | None:
        """The DP-SGD settings when DP-SGD is on."""
        return self.training.dp if self.training.dp.enabled else None

    @property
    def steps_per_epoch(self) -> int:
        return self.train_steps // self.training.epochs


def backup_key(config: Mapping[str, Any], train_files: list[str]) -> str:
    """Same settings and same training data → same backup, so a rerun after a crash resumes."""
    return hashlib.sha256(json.dumps({"config": config, "train": sorted(train_files)},
                                     sort_keys=True, default=str).encode()).hexdigest()


def labels_as_column(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Labels as [batch, 1]: DP-SGD's per-example losses need one loss per row, not a scalar."""
    return dataset.map(lambda features, label: (features, tf.reshape(label, [-1, 1])))


def train_example_count(fn_args: Any) -> int:
    """Training examples, from the StatisticsGen statistics the Trainer receives (for DP accounting)."""
    counts = getattr(fn_args, "num_examples", None) or {}
    if "train" not in counts:
        raise ValueError("DP accounting needs the train example count: give the Trainer the StatisticsGen "
                         "statistics input (pipeline/dag.py does)")
    return int(counts["train"])


def train_and_export(
    plan: TrainingPlan,
    *,
    build_model: Callable[[], tf.keras.Model],
    loss: tf.keras.losses.Loss,
    metrics: Callable[[], list[Any]],
    datasets: Callable[[int], tuple[tf.data.Dataset, tf.data.Dataset]],
    eval_steps: int,
    num_train_examples: Callable[[], int],
    export: Callable[[tf.keras.Model, str], None],
    serving_model_dir: str,
    model_run_dir: str,
    backup_key_text: str,
    class_weight: dict[int, float] | None = None,
) -> dict[str, Value]:
    """Train per ``plan`` and export the serving model; returns the facts written to the record.

    ``datasets(global_batch_size)`` returns (train, eval) datasets of full batches, repeating;
    ``export(model, directory)`` writes the SavedModel with its signatures;
    ``num_train_examples()`` is called only for DP accounting.
    """
    training, batch_size = plan.training, plan.model.batch_size
    if training.debug_numerics:
        tf.debugging.enable_check_numerics()
    strategy = strategy_lib.build_strategy(training.distribution.strategy, training.distribution.num_replicas)
    seed = determinism.make_deterministic(training.seed)
    train, evaluation = (labels_as_column(ds) for ds in datasets(batch_size))
    determinism.reseed_model_ops(seed, strategy)

    epsilon_fn = None
    if plan.dp is not None:
        q = privacy_accounting.sampling_probability(batch_size, num_train_examples())
        epsilon_fn = functools.partial(privacy_accounting.compute_epsilon, sampling_probability=q,
                                       noise_multiplier=plan.dp.noise_multiplier, delta=plan.dp.delta,
                                       accountant=plan.dp.accountant)
        planned = epsilon_fn(steps=plan.train_steps)
        absl.logging.info("DP-SGD plan: %d steps at q=%.5f → epsilon %.3f (max %.3f, delta %g)",
                          plan.train_steps, q, planned, plan.dp.max_epsilon, plan.dp.delta)
        privacy_accounting.check_privacy_budget(planned, plan.dp.max_epsilon, plan.dp.delta, plan.dp.accountant)

    with strategy.scope():
        # The plain functional model is what gets exported: the DP wrapper shares its weights but
        # would make the SavedModel depend on tensorflow-privacy's classes.
        exported = model = build_model()
        optimizer = tf.keras.optimizers.Adam(plan.model.learning_rate)
        if plan.dp is not None:
            model = dp.compile_dp_model(model, plan.dp, optimizer=optimizer, loss=loss, metrics=metrics())
        else:
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics())

    backup_dir = checkpointing.backup_dir_for(str(training.backup_root or f"{model_run_dir}/backup"), backup_key_text)
    backup = checkpointing.ResumableBackup(backup_dir)
    model.fit(train, epochs=training.epochs, steps_per_epoch=plan.steps_per_epoch,
              validation_data=evaluation, validation_steps=eval_steps, class_weight=class_weight, verbose=2,
              callbacks=[callbacks.NonFiniteGuard(), backup, callbacks.LearningRateAndEpsilonLogger(epsilon_fn),
                         tf.keras.callbacks.TensorBoard(model_run_dir, histogram_freq=training.histogram_freq,
                                                        write_graph=True)])

    steps = int(model.optimizer.iterations.numpy())
    record: dict[str, Value] = {
        "seed": seed, "epochs": training.epochs, "steps": steps, "strategy": training.distribution.strategy,
        "num_replicas": strategy.num_replicas_in_sync, "batch_size": batch_size,
        "resumed_from_epoch": backup.resumed_from.epochs_completed if backup.resumed_from else 0,
        "dp": plan.dp is not None,
    }
    if plan.dp is not None and epsilon_fn is not None:
        epsilon = epsilon_fn(steps=steps)
        record.update(dp_epsilon=epsilon, dp_delta=plan.dp.delta, dp_noise_multiplier=plan.dp.noise_multiplier,
                      dp_l2_norm_clip=plan.dp.l2_norm_clip, dp_clipping=plan.dp.clipping,
                      dp_accountant=plan.dp.accountant, dp_sampling_probability=q)
        privacy_accounting.check_privacy_budget(epsilon, plan.dp.max_epsilon, plan.dp.delta, plan.dp.accountant)

    export(exported, strategy_lib.worker_output_dir(serving_model_dir, strategy))
    if strategy_lib.is_chief(strategy):
        write_training_record(model_run_dir, record)
    checkpointing.remove_backup(backup_dir)
    return record
