"""The card-fraud classifier (Keras Functional API) and the Trainer's run_fn.

Two branches meet in custom layers:

    card history [batch, steps, features] -- causal Conv1D -- LSTM --+
                                                                     MaskedAttentionPooling -- GatedFusion -- dense -- sigmoid
    current transaction -- embeddings + numbers -- dense ------------+ (the query)   (and the current side) ^

Honouring the mask: histories are most recent first and padded at the end, so padding is always a
suffix. A causal Conv1D and a forward LSTM never look at later steps, hence the encodings of real
steps do not depend on the padding at all, and MaskedAttentionPooling gives padded steps exactly zero
weight. Padded values therefore cannot change a prediction (tested).

Each numeric history step can also be read relative to the current transaction
(``relative_history``: current minus step on one scale, a log ratio for amounts), and
``ensemble_size`` trains k such networks side by side in the one model, served as their mean.

Class imbalance (about 1.5 % frauds): by default a class-balanced focal loss. Why: most legitimate
transactions are easy (a grocery purchase in the home city); focal loss shrinks their share of the
gradient so training spends itself on the hard cases (travel versus cloned cards), and it needs no
class prior up front, which a Trainer streaming its data does not have. ``loss: weighted_bce`` (class
weights) is the alternative, with ``positive_weight``.
"""  # noqa: E501 - the diagram above is drawn wider than the code
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
from models.fraud.features import (
    DAY_OF_WEEK,
    DAYS_PER_WEEK,
    HOUR_OF_DAY,
    HOURS_PER_DAY,
    OOV_BUCKETS,
    FraudSettings,
    transformed_name,
    vocabulary_name,
)
from models.fraud.layers import GatedFusion, MaskedAttentionPooling, RelativeToCurrent
from models.fraud.signatures import explain_groups, make_serving_signatures

OUTPUT_NAME = "probability"


def vocabularies(settings: FraudSettings) -> list[str]:
    """Every vocabulary the model embeds (current string columns and unshared history ones)."""
    names = [vocabulary_name(name) for name in settings.categorical_features]
    for name, kind in settings.sequence.value_features.items():
        if kind == "string" and settings.history_vocabulary(name) not in names:
            names.append(settings.history_vocabulary(name))
    return names


def current_inputs(settings: FraudSettings) -> dict[str, tf.DType]:
    """Model inputs of shape [batch, 1]: transformed current-transaction columns and the history count."""
    inputs = {transformed_name(name): tf.float32 for name in settings.numeric_features}
    inputs.update({transformed_name(name): tf.int64 for name in settings.categorical_features})
    if settings.uses_time:
        inputs[transformed_name(HOUR_OF_DAY)] = tf.int64
        inputs[transformed_name(DAY_OF_WEEK)] = tf.int64
    inputs[transformed_name(settings.sequence.count)] = tf.float32
    return inputs


def sequence_inputs(settings: FraudSettings) -> dict[str, tf.DType]:
    """Model inputs of shape [batch, steps]: per-step history values, seconds since, the mask."""
    sequence = settings.sequence
    inputs = {transformed_name(name): (tf.int64 if kind == "string" else tf.float32)
              for name, kind in sequence.value_features.items()}
    inputs[transformed_name(sequence.seconds_since)] = tf.float32
    inputs[transformed_name(sequence.mask)] = tf.float32
    return inputs


def to_model_inputs(settings: FraudSettings, transformed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Transformed features -> the model's named inputs ([batch, 1] or [batch, steps]); label dropped."""
    length = settings.sequence.length
    result = {name: tf.cast(tf.reshape(transformed[name], [-1, 1]), dtype)
              for name, dtype in current_inputs(settings).items()}
    result.update({name: tf.cast(tf.reshape(transformed[name], [-1, length]), dtype)
                   for name, dtype in sequence_inputs(settings).items()})
    return result


def build_model(settings: FraudSettings, vocabulary_sizes: dict[str, int]) -> tf.keras.Model:
    """The two-branch network (uncompiled: the training loop compiles it in its strategy scope).

    With ``ensemble_size`` k > 1, k such networks (own initial weights and dropout seeds) read the
    same inputs and the model outputs their k probabilities [batch, k]: the [batch, 1] label
    broadcasts over the columns, so each member learns from its own loss, as independently trained
    models would, and the serving signatures return their mean (`served_probability`). One
    SavedModel, less variance from a train window that holds only a few hundred frauds.
    """
    length = settings.sequence.length
    missing = [name for name in vocabularies(settings) if name not in vocabulary_sizes]
    if missing:
        raise ValueError(f"vocabulary sizes missing for {missing}; pass the Transform output's sizes")
    inputs = {name: tf.keras.Input(shape=(1,), name=name, dtype=dtype)
              for name, dtype in current_inputs(settings).items()}
    inputs.update({name: tf.keras.Input(shape=(length,), name=name, dtype=dtype)
                   for name, dtype in sequence_inputs(settings).items()})

    members = settings.model.options.ensemble_size
    towers = [_member(settings, inputs, vocabulary_sizes, member, f"_{member}" if members > 1 else "")
              for member in range(members)]
    output = towers[0] if members == 1 else tf.keras.layers.Concatenate(name=OUTPUT_NAME)(towers)
    return tf.keras.Model(inputs=inputs, outputs=output, name="fraud_classifier")


def _member(settings: FraudSettings, inputs: dict[str, tf.Tensor], vocabulary_sizes: dict[str, int],
            member: int, suffix: str) -> tf.Tensor:
    """One two-branch network over the shared inputs; its fraud probability [batch, 1]."""
    options, sequence, length = settings.model.options, settings.sequence, settings.sequence.length
    embeddings = {name: tf.keras.layers.Embedding(vocabulary_sizes[name] + OOV_BUCKETS, options.embedding_dim,
                                                  name=f"embed_{name}{suffix}")
                  for name in vocabularies(settings)}

    # Current transaction: numbers as they are, strings and time of day/week through embeddings.
    current = [inputs[transformed_name(name)] for name in settings.numeric_features]
    current.append(inputs[transformed_name(sequence.count)])
    for name in settings.categorical_features:
        embedded = embeddings[vocabulary_name(name)](inputs[transformed_name(name)])
        current.append(tf.keras.layers.Flatten(name=f"flat_{name}{suffix}")(embedded))
    if settings.uses_time:
        for name, size in ((HOUR_OF_DAY, HOURS_PER_DAY), (DAY_OF_WEEK, DAYS_PER_WEEK)):
            embedded = tf.keras.layers.Embedding(size, options.embedding_dim, name=f"embed_{name}{suffix}")(
                inputs[transformed_name(name)])
            current.append(tf.keras.layers.Flatten(name=f"flat_{name}{suffix}")(embedded))
    current_encoding = tf.keras.layers.Dense(settings.model.hidden_units[0], activation="relu",
                                             name=f"current_dense{suffix}")(
        tf.keras.layers.Concatenate(name=f"current_features{suffix}")(current))

    # Card history: one feature vector per step, then local patterns (bursts) and order.
    steps = []
    for name, kind in sequence.value_features.items():
        value = inputs[transformed_name(name)]
        if kind == "string":
            steps.append(embeddings[settings.history_vocabulary(name)](value))
        else:
            steps.append(tf.keras.layers.Reshape((length, 1), name=f"steps_{name}{suffix}")(value))
            base = sequence.base_name(name)
            if options.relative_history and base in settings.numeric_features:
                relative = RelativeToCurrent(name=f"relative_{name}{suffix}")(
                    [inputs[transformed_name(base)], value, inputs[transformed_name(sequence.mask)]])
                steps.append(tf.keras.layers.Reshape((length, 1), name=f"steps_relative_{name}{suffix}")(relative))
    steps.append(tf.keras.layers.Reshape((length, 1), name=f"steps_seconds_since{suffix}")(
        inputs[transformed_name(sequence.seconds_since)]))
    step_features = tf.keras.layers.Concatenate(name=f"step_features{suffix}")(steps) if len(steps) > 1 else steps[0]
    convolved = tf.keras.layers.Conv1D(options.conv_filters, options.conv_kernel_size, padding="causal",
                                       activation="relu", name=f"history_conv{suffix}")(step_features)
    encoded = tf.keras.layers.LSTM(options.lstm_units, return_sequences=True, unroll=options.lstm_unroll,
                                   name=f"history_lstm{suffix}")(convolved)
    history = MaskedAttentionPooling(options.attention_units, name=f"history_attention{suffix}")(
        [encoded, current_encoding, inputs[transformed_name(sequence.mask)]])

    hidden = GatedFusion(options.fusion_units, name=f"fusion{suffix}")([history, current_encoding])
    for index, units in enumerate(settings.model.hidden_units[1:]):
        hidden = tf.keras.layers.Dense(units, activation="relu", name=f"dense_{index}{suffix}")(hidden)
        if settings.model.dropout:
            hidden = tf.keras.layers.Dropout(settings.model.dropout, seed=settings.training.seed + member,
                                             name=f"dropout_{index}{suffix}")(hidden)
    return tf.keras.layers.Dense(1, activation="sigmoid", name=f"{OUTPUT_NAME}{suffix}")(hidden)


def served_probability(output: tf.Tensor) -> tf.Tensor:
    """The score the signatures serve: the model's probability, or its members' mean [batch, 1]."""
    return tf.reduce_mean(output, axis=-1, keepdims=True)


def make_metrics(settings: FraudSettings | None = None) -> list[tf.keras.metrics.Metric]:
    """Training-time AUCs; an ensemble's [batch, k] output has none (its loss is the members' mean)."""
    if settings is not None and settings.model.options.ensemble_size > 1:
        return []
    return [tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.AUC(curve="PR", name="auc_pr")]


def make_loss(settings: FraudSettings) -> tf.keras.losses.Loss:
    """The imbalance-aware loss the options name (see the module docstring for why focal by default)."""
    options = settings.model.options
    if options.loss == "focal":
        return tf.keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=options.focal_alpha, gamma=options.focal_gamma)
    return tf.keras.losses.BinaryCrossentropy()


def class_weight(settings: FraudSettings) -> dict[int, float] | None:
    """Keras class weights for ``loss: weighted_bce``; the focal loss balances classes itself."""
    options = settings.model.options
    return {0: 1.0, 1: options.positive_weight} if options.loss == "weighted_bce" else None


def model_inputs_and_label(settings: FraudSettings, transformed: dict[str, tf.Tensor],
                           label: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """What the input pipeline maps each batch of transformed examples to ([batch, 1] float label)."""
    return to_model_inputs(settings, transformed), tf.cast(tf.reshape(label, [-1, 1]), tf.float32)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train per the config's training plan, export the four signatures and the
    explanation metadata (models/common/explain.py)."""
    config = fn_args.custom_config or {}
    settings = FraudSettings.from_custom_config(config)
    plan = TrainingPlan(settings, fn_args.train_steps)
    transform_output = tft.TFTransformOutput(fn_args.transform_output)
    sizes = {name: transform_output.vocabulary_size_by_name(name) for name in vocabularies(settings)}

    datasets = trainer_datasets(
        fn_args, transform_output.transformed_metadata.schema, label_key=settings.data.label,
        seed=settings.training.seed, to_model_inputs=functools.partial(model_inputs_and_label, settings),
        options=settings.training.input)

    def export(model: tf.keras.Model, directory: str) -> None:
        signatures = make_serving_signatures(
            model, transform_output, settings, lambda transformed: to_model_inputs(settings, transformed))
        model.save(directory, save_format="tf", signatures=signatures, include_optimizer=False)
        explain.write_metadata(directory, explain_groups(settings, model.input_names), settings.model.explain,
                               settings.decision_threshold)

    train_and_export(
        plan, build_model=lambda: build_model(settings, sizes), loss=make_loss(settings),
        metrics=lambda: make_metrics(settings),
        datasets=datasets, eval_steps=fn_args.eval_steps, num_train_examples=lambda: train_example_count(fn_args),
        export=export, serving_model_dir=fn_args.serving_model_dir, model_run_dir=fn_args.model_run_dir,
        backup_key_text=backup_key(config, fn_args.train_files), class_weight=class_weight(settings))
