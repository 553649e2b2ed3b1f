"""The Trainer's run_fn for the generic tabular classifier: input pipeline, training, export."""
from __future__ import annotations

import functools
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from models.common import explain
from models.common.input_pipeline import trainer_datasets
from models.common.training import TrainingPlan, backup_key, train_and_export, train_example_count
from models.tabular.features import TabularSettings, transformed_name, vocabulary_name
from models.tabular.network import build_model, to_model_inputs
from models.tabular.signatures import make_serving_signatures


def model_inputs_and_label(settings: TabularSettings, transformed: dict[str, tf.Tensor],
                           label: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """What the input pipeline maps each batch of transformed examples to."""
    return to_model_inputs(settings, transformed), label


def explain_groups(settings: TabularSettings) -> dict[str, str | None]:
    """Each model input is one raw column's transformed value: attributed to that column."""
    return {transformed_name(name): name for name in settings.data.features}


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train per the config's training plan, export the serving and explain
    signatures and the explanation metadata (models/common/explain.py)."""
    config = fn_args.custom_config or {}
    settings = TabularSettings.from_custom_config(config)
    plan = TrainingPlan(settings, fn_args.train_steps)
    transform_output = tft.TFTransformOutput(fn_args.transform_output)
    sizes = {name: transform_output.vocabulary_size_by_name(vocabulary_name(name))
             for name in settings.categorical_features}

    datasets = trainer_datasets(
        fn_args, transform_output.transformed_metadata.schema, label_key=settings.data.label,
        seed=settings.training.seed,
        to_model_inputs=functools.partial(model_inputs_and_label, settings),
        options=settings.training.input)

    def export(model: tf.keras.Model, directory: str) -> None:
        groups = explain_groups(settings)
        signatures = make_serving_signatures(
            model, transform_output, settings.data.label, list(settings.data.features),
            lambda transformed: to_model_inputs(settings, transformed), settings.model.explain, groups)
        model.save(directory, save_format="tf", signatures=signatures, include_optimizer=False)
        explain.write_metadata(directory, groups, settings.model.explain, settings.decision_threshold)

    train_and_export(
        plan, build_model=lambda: build_model(settings, sizes), loss=tf.keras.losses.BinaryCrossentropy(),
        metrics=lambda: [tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy(name="accuracy")],
        datasets=datasets, eval_steps=fn_args.eval_steps,
        num_train_examples=lambda: train_example_count(fn_args), export=export,
        serving_model_dir=fn_args.serving_model_dir, model_run_dir=fn_args.model_run_dir,
        backup_key_text=backup_key(config, fn_args.train_files))
