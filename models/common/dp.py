"""DP-SGD from config: tensorflow-privacy's clipping and noise, exact under any number of replicas.

Three clipping methods, all from tensorflow-privacy 0.9.0:

* ``fast``: `DPModel` with the fast ("ghost") gradient-norm registry. Per-example norms come from
  one extra backward pass, so it costs little more than non-private training. Every layer with
  trainable weights must be in the registry (Dense, Embedding); otherwise use ``vectorized``.
* ``vectorized``: `DPModel` without a registry; per-example gradients with `tf.vectorized_map`.
  Works for any layer without a `tf.while_loop` (an LSTM must be unrolled), memory grows with
  batch × parameters. By default (``jit_compile``) the per-example gradients are compiled with XLA:
  on the fraud model that is 5× faster, and it avoids a heap corruption ("free(): invalid next
  size") that TF 2.21's oneDNN CPU kernels hit on the vectorized graph of an unrolled LSTM.
  tensorflow-privacy's own ``use_xla`` compiles the whole train step instead, which fails under
  MirroredStrategy (``merge_call`` inside XLA) and breaks saving the DP model; compiling only the
  per-example part keeps the optimizer and the cross-replica sum outside XLA.
* ``microbatch``: the Gaussian DP optimizer (`make_gaussian_query_optimizer_class`), clipping
  the mean gradient of each of ``num_microbatches`` groups (default: one example per group) in
  a `tf.while_loop`.

On one replica tensorflow-privacy is used exactly as documented. On R > 1 replicas
(MirroredStrategy, MultiWorkerMirroredStrategy) it is not correct as is, because three things
compose badly: Keras 2 divides a mean-reduced loss by R before differentiating
(`scale_loss_for_distribution`), tensorflow-privacy then clips, adds the *full* noise and
normalises by the *local* batch on every replica, and the optimizer finally *sums* the replicas'
gradients. The update comes out R times too large (``vectorized``, ``microbatch``; the
``vectorized`` path also clips at R·C) and the noise R**1.5 times too large (all three). The
minimal correct piece is to give tensorflow-privacy per-replica parameters that undo this,
derived in `replica_parameters` (for ``microbatch`` also a 1/R factor on the optimizer's
gradients), so that the summed update is exactly ``(sum_i clip_C(g_i) + N(0, (z·C)²)) / B``
with B the global batch: each replica adds an independent share of the noise whose sum has the
stated standard deviation, so the privacy guarantee is the one the accountant computes. Tests
check both the mean and the noise under 1 and 2 replicas.

Saving: a model compiled with the ``microbatch`` optimizer must be saved with
``model.save(..., include_optimizer=False)``; otherwise `tf.keras.models.load_model` (which TFMA
calls) fails with "Unknown optimizer: 'DPOptimizerClass'". Regularization losses are not allowed
under R > 1 (tensorflow-privacy adds their gradient on every replica, then the sum makes it R×).
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import tensorflow as tf

from errors import EsteiraError
from models.common.settings import DPSettings


class DPConfigError(EsteiraError, ValueError):
    """A DP-SGD setting that cannot work with this model or strategy, with the reason and the fix."""


@dataclass(frozen=True)
class ReplicaParameters:
    """What one replica passes to tensorflow-privacy so that the summed update is exact."""

    l2_norm_clip: float
    noise_multiplier: float
    num_microbatches: int | None
    gradient_scale: float = 1.0


def replica_parameters(config: DPSettings, num_replicas: int) -> ReplicaParameters:
    """Per-replica clip norm, noise multiplier, microbatch count and gradient scale for R replicas.

    With C, z the configured values and B the global batch (each replica sees B/R examples):

    * ``vectorized`` differentiates the loss already divided by R, so clipping at C/R clips the
      true gradient at C. Each replica returns ``R/B · (sum_local clip_C(g_i)/R + σ'·N(0,1))``
      with σ' its noise std, and the sum over replicas has noise std ``R**1.5·σ'/B``;
      σ' = (C/R)·(z/√R) makes that z·C/B.
    * ``microbatch`` uses an unreduced loss (not divided by R), so it clips at C; each replica
      returns ``(sum_local clip_C(g_i) + σ'·N(0,1)) · R/B`` and the sum is R times the mean, so
      the gradients are scaled by 1/R and σ' = C·z/√R. Microbatches are counted per replica.
    * ``fast`` computes the norms on the undivided loss (clip at C is right) and its mean comes
      out right, but each replica adds noise z'·C scaled by R/B, so z' = z / R**1.5.
    """
    if num_replicas < 1:
        raise DPConfigError(f"num_replicas must be >= 1, got {num_replicas}.")
    r = float(num_replicas)
    c, z = config.l2_norm_clip, config.noise_multiplier
    if config.clipping == "fast":
        return ReplicaParameters(c, z / r**1.5, None)
    if config.clipping == "vectorized":
        return ReplicaParameters(c / r, z / math.sqrt(r), None)
    microbatches = config.num_microbatches
    if microbatches is not None:
        if microbatches % num_replicas:
            raise DPConfigError(
                f"num_microbatches={microbatches} must be a multiple of the {num_replicas} replicas "
                "(each replica clips its own share of the microbatches)."
            )
        microbatches //= num_replicas
    return ReplicaParameters(c, z / math.sqrt(r), microbatches, gradient_scale=1.0 / r)


def tf_privacy() -> SimpleNamespace:
    """Import the parts of tensorflow-privacy 0.9.0 that work on TF 2.21.

    Its package `__init__` imports the removed TF estimator unless `sys.skip_tf_privacy_import`
    is set, so set it and import the submodules directly.
    """
    sys.skip_tf_privacy_import = True  # type: ignore[attr-defined]
    from tensorflow_privacy.privacy.fast_gradient_clipping import layer_registry
    from tensorflow_privacy.privacy.keras_models import dp_keras_model
    from tensorflow_privacy.privacy.optimizers import dp_optimizer_keras

    return SimpleNamespace(
        DPModel=dp_keras_model.DPModel,
        make_keras_generic_optimizer_class=dp_optimizer_keras.make_keras_generic_optimizer_class,
        make_gaussian_query_optimizer_class=dp_optimizer_keras.make_gaussian_query_optimizer_class,
        make_default_layer_registry=layer_registry.make_default_layer_registry,
    )


def compile_dp_model(
    model: tf.keras.Model,
    config: DPSettings,
    *,
    optimizer: tf.keras.optimizers.Optimizer | tf.keras.optimizers.legacy.Optimizer,
    loss: tf.keras.losses.Loss,
    metrics: Sequence[Any] | None = None,
    num_replicas: int | None = None,
    **compile_kwargs: Any,
) -> tf.keras.Model:
    """Return `model` compiled for DP-SGD with `config`; call it inside `strategy.scope()`.

    `model` must be a functional (or Sequential) Keras model; for ``fast`` and ``vectorized`` the
    returned model is a tensorflow-privacy `DPModel` sharing its layers and weights, for
    ``microbatch`` it is `model` itself with a DP optimizer. `optimizer` and `loss` are the
    non-private ones (a mean-reduced loss); they are adapted as each method needs.
    `num_replicas` defaults to the current strategy's `num_replicas_in_sync`.
    """
    if num_replicas is None:
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if not getattr(model, "_is_graph_network", False):
        raise DPConfigError(
            f"DP-SGD needs a functional or Sequential Keras model, got {type(model).__name__}: "
            "build it with tf.keras.Input(...) and the functional API."
        )
    if not isinstance(loss, tf.keras.losses.Loss):
        raise DPConfigError(
            f"loss must be a tf.keras.losses.Loss instance (e.g. BinaryCrossentropy()), got {loss!r}."
        )
    if num_replicas > 1 and model.losses:
        raise DPConfigError(
            f"The model has {len(model.losses)} regularization loss(es); under {num_replicas} "
            "replicas tensorflow-privacy would apply them once per replica. Remove the "
            "regularizers from DP models or train on one replica."
        )
    params = replica_parameters(config, num_replicas)
    tfp = tf_privacy()
    if config.clipping == "microbatch":
        dp_optimizer = _dp_optimizer(tfp, optimizer, params)
        per_example_loss = type(loss).from_config({**loss.get_config(), "reduction": "none"})
        model.compile(optimizer=dp_optimizer, loss=per_example_loss, metrics=metrics, **compile_kwargs)
        return model
    registry = tfp.make_default_layer_registry() if config.clipping == "fast" else None
    model_class = _xla_per_example_class(tfp.DPModel) if config.clipping == "vectorized" and config.jit_compile \
        else tfp.DPModel
    dp_model = model_class(
        l2_norm_clip=params.l2_norm_clip,
        noise_multiplier=params.noise_multiplier,
        num_microbatches=None,
        use_xla=False,  # an XLA train_step breaks MirroredStrategy and saving; see _xla_per_example_class
        layer_registry=registry,
        inputs=model.input,
        outputs=model.output,
        name=model.name,
    )
    if registry is not None and not dp_model._enable_fast_peg_computation:  # clipping "fast"
        unregistered = sorted(
            f"{layer.name} ({type(layer).__name__})"
            for layer in model.layers
            if layer.trainable_variables and not registry.is_elem(layer)
        )
        raise DPConfigError(
            "clipping='fast' needs every layer with trainable weights in tensorflow-privacy's "
            f"fast-clipping registry (Dense, Embedding); these are not: {', '.join(unregistered)}. "
            "Use clipping='vectorized' for this model."
        )
    dp_model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **compile_kwargs)
    return dp_model


def _dp_optimizer(
    tfp: SimpleNamespace,
    optimizer: tf.keras.optimizers.Optimizer | tf.keras.optimizers.legacy.Optimizer,
    params: ReplicaParameters,
) -> tf.keras.optimizers.legacy.Optimizer:
    """The DP version of `optimizer`; tensorflow-privacy wraps only Keras 2 *legacy* optimizers."""
    legacy_cls: type | None
    if isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer):
        legacy_cls, config = type(optimizer), optimizer.get_config()
    else:
        legacy_cls = getattr(tf.keras.optimizers.legacy, type(optimizer).__name__, None)
        if legacy_cls is None:
            raise DPConfigError(
                f"clipping='microbatch' has no legacy Keras optimizer matching "
                f"{type(optimizer).__name__}; pass one of tf.keras.optimizers.legacy.*."
            )
        accepted = inspect.signature(legacy_cls.__init__).parameters
        config = {k: v for k, v in optimizer.get_config().items() if k in accepted}
    if isinstance(config.get("learning_rate"), dict):  # a serialized schedule
        config["learning_rate"] = tf.keras.optimizers.schedules.deserialize(config["learning_rate"])
    dp_cls = tfp.make_keras_generic_optimizer_class(legacy_cls)
    if params.gradient_scale != 1.0:
        dp_cls = _scaled_gradients(dp_cls, params.gradient_scale)
    return tfp.make_gaussian_query_optimizer_class(dp_cls)(
        l2_norm_clip=params.l2_norm_clip,
        noise_multiplier=params.noise_multiplier,
        num_microbatches=params.num_microbatches,
        **config,
    )


def _scaled_gradients(dp_cls: type, scale: float) -> type:
    """`dp_cls` whose private gradients are multiplied by `scale` (1/R, see `replica_parameters`)."""

    class ReplicaScaledDPOptimizer(dp_cls):
        def _compute_gradients(self, loss, var_list, grad_loss=None, tape=None):  # type: ignore[no-untyped-def]
            grads_and_vars = super()._compute_gradients(loss, var_list, grad_loss, tape)
            return [(g * scale, v) for g, v in grads_and_vars]

    ReplicaScaledDPOptimizer.__name__ = f"ReplicaScaled{dp_cls.__name__}"
    return ReplicaScaledDPOptimizer


def _xla_per_example_class(dp_model_class: type) -> type:
    """`DPModel` whose ``vectorized`` per-example clipped gradients run as one XLA computation.

    Its train step is tensorflow-privacy's vectorized branch (same clipping, noise, mean and
    metrics, with ``num_microbatches=None``, i.e. one example per group), except that the
    `tf.vectorized_map` over examples is compiled; noise, regularization and the optimizer stay
    outside XLA, so cross-replica reductions behave as without it.
    """

    class XlaPerExampleDPModel(dp_model_class):
        def train_step(self, data):  # type: ignore[no-untyped-def]
            if self._clipping_loss is None:
                self._make_clipping_loss()
            x, y, weights = tf.keras.utils.unpack_x_y_sample_weight(data)
            per_example = tf.nest.map_structure(lambda t: tf.expand_dims(t, axis=1), data)
            clipped = self._compiled_per_example_grads(per_example)
            grads = tf.nest.map_structure(self._reduce_per_example_grads, clipped)
            if self.losses:  # batch-independent by contract (see compile_dp_model for R > 1)
                with tf.GradientTape() as tape:
                    regularization = tf.add_n(self.losses)
                extra = tape.gradient(regularization, self.trainable_variables,
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                grads = [g + r for g, r in zip(grads, extra, strict=True)]
            y_pred = self(x, training=True)
            self.compiled_loss(y, y_pred, sample_weight=weights, regularization_losses=self.losses)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
            self.compiled_metrics.update_state(y, y_pred)
            return {metric.name: metric.result() for metric in self.metrics}

        @functools.cached_property
        def _compiled_per_example_grads(self):  # type: ignore[no-untyped-def]
            return tf.function(lambda examples: tf.vectorized_map(self._compute_per_example_grads, examples),
                               jit_compile=True, autograph=False)

    XlaPerExampleDPModel.__name__ = f"XlaPerExample{dp_model_class.__name__}"
    return XlaPerExampleDPModel
