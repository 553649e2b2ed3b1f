"""The ``explain`` signature: integrated gradients of the served score per raw feature, inside the SavedModel.

Why a signature: the explanation then runs the very graph that decided (Transform included), any TF Serving
serves it, and nothing outside the model has to re-implement preprocessing. Why integrated gradients: its
attributions add up to the score minus the baseline's score (completeness), so a reason code's share of a
decision is a measured number, not a heuristic.

The path runs in the model's input space after Transform: numbers from 0 (the z-score of the training mean)
to their transformed value, string (and hour/day) columns from the zero vector to their embedding, since an
id cannot be interpolated. Inputs that say how much history there is (the mask, the count) stay as they are
on the whole path: the card history's attribution compares its steps with average-looking steps of the same
history, and the baseline score is the model's score for that reference transaction. The integral is a
Gauss-Legendre quadrature with ``model.explain.steps`` nodes, so one explained row costs that many gradient
rows, a bound fixed at export.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from errors import EsteiraError
from models.common.settings import ExplainSettings

EXPLAIN_SIGNATURE = "explain"
SCORE_KEY = "probability"
BASELINE_KEY = "baseline_probability"
ATTRIBUTION_PREFIX = "attribution_"
METADATA_DIR = "assets.extra"  # TF Serving's folder for files beside a SavedModel; its loader ignores them
METADATA_FILE = "esteira_model.json"
METHOD = "integrated gradients"
BASELINE_TEXT = ("numeric features at their training mean, string and time features at the zero embedding, "
                 "card-history steps at average values with the history's length kept")


class ExplainExportError(EsteiraError, ValueError):
    """The model cannot be explained as built; the message names the input and what to change."""


def attribution_key(feature: str) -> str:
    return f"{ATTRIBUTION_PREFIX}{feature}"


def quadrature(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1] (the weights sum to 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return ((nodes + 1.0) / 2.0).astype(np.float32), (weights / 2.0).astype(np.float32)


@dataclass(frozen=True)
class _Cut:
    """One input of the differentiable head: a float model input, or an embedding's output of an id input."""

    source: str  # the model input it comes from
    layer: tf.keras.layers.Layer | None  # the embedding that maps the ids, None for a float input


def _differentiable_head(model: tf.keras.Model) -> tuple[tf.keras.Model, list[_Cut]]:
    """The model from its float inputs and its embeddings' outputs on: what a gradient can flow through."""
    names = dict(zip((id(t) for t in model.inputs), model.input_names, strict=True))
    id_inputs = {id(t) for t in model.inputs if t.dtype.is_integer}
    head_inputs, cuts = [], []
    for tensor, name in zip(model.inputs, model.input_names, strict=True):
        if id(tensor) not in id_inputs:
            head_inputs.append(tensor)
            cuts.append(_Cut(name, None))
    consumed = set()
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        for node in layer.inbound_nodes:
            sources = [t for t in tf.nest.flatten(node.input_tensors) if id(t) in id_inputs]
            if not sources:
                continue
            if not isinstance(layer, tf.keras.layers.Embedding):
                raise ExplainExportError(
                    f"integer input {names[id(sources[0])]!r} feeds layer {layer.name!r} "
                    f"({type(layer).__name__}); only an Embedding can take ids in an explained model (a path "
                    "between ids has no meaning): embed it, or feed it as a float")
            consumed.add(id(sources[0]))
            head_inputs.append(node.outputs)
            cuts.append(_Cut(names[id(sources[0])], layer))
    unused = sorted(names[i] for i in id_inputs - consumed)
    if unused:
        raise ExplainExportError(f"integer inputs {unused} reach no Embedding; the explain signature cannot "
                                 "attribute to them")
    return tf.keras.Model(head_inputs, model.outputs, name=f"{model.name}_explained"), cuts


def _served(output: tf.Tensor) -> tf.Tensor:
    """The score the serving signatures answer: the probability, or an ensemble's mean [batch, 1]."""
    return tf.reduce_mean(output, axis=-1, keepdims=True)


def make_explainer(model: tf.keras.Model, groups: Mapping[str, str | None],
                   settings: ExplainSettings) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """Model inputs -> score, baseline score and one attribution per feature group ([batch] each).

    ``groups`` maps every model input to the raw feature it is attributed to, or None for an input held at
    its value along the path (the history's mask and count)."""
    missing = sorted(set(model.input_names) - set(groups))
    if missing:
        raise ExplainExportError(f"no feature group for model inputs {missing}; list each in the explain groups")
    head, cuts = _differentiable_head(model)
    nodes, weights = quadrature(settings.steps)
    features = sorted({group for group in groups.values() if group is not None})

    def explain(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        values = [tf.cast(inputs[cut.source] if cut.layer is None else cut.layer(inputs[cut.source]), tf.float32)
                  for cut in cuts]
        moving = [groups[cut.source] is not None for cut in cuts]
        batch = tf.shape(values[0])[0]
        steps = len(nodes)
        score = _served(head(values, training=False))
        baseline = _served(head([tf.zeros_like(v) if m else v for v, m in zip(values, moving, strict=True)],
                                training=False))
        paths = []
        for value, is_moving in zip(values, moving, strict=True):
            rank = len(value.shape)
            if is_moving:
                alphas = tf.reshape(tf.constant(nodes), [steps] + [1] * rank)
                path = alphas * value[tf.newaxis]  # the baseline is 0: baseline + alpha (value - baseline)
            else:
                path = tf.tile(value[tf.newaxis], [steps] + [1] * rank)
            paths.append(tf.reshape(path, tf.concat([[steps * batch], tf.shape(value)[1:]], axis=0)))
        with tf.GradientTape() as tape:
            tape.watch(paths)
            along = _served(head(paths, training=False))
        gradients = tape.gradient(along, paths)
        totals = {feature: tf.zeros([batch]) for feature in features}
        for cut, value, gradient, is_moving in zip(cuts, values, gradients, moving, strict=True):
            if not is_moving:
                continue
            per_step = tf.reshape(gradient, tf.concat([[steps, batch], tf.shape(value)[1:]], axis=0))
            mean_gradient = tf.tensordot(tf.constant(weights), per_step, axes=1)
            share = value * mean_gradient
            group = groups[cut.source]
            assert group is not None  # moving inputs have a group
            totals[group] += tf.reduce_sum(tf.reshape(share, [batch, -1]), axis=1)
        return {SCORE_KEY: score, BASELINE_KEY: baseline,
                **{attribution_key(feature): total for feature, total in totals.items()}}

    return explain


def metadata(features: list[str], settings: ExplainSettings, decision_threshold: float) -> dict[str, Any]:
    """What the server reads beside the SavedModel: the class rule and how to word each attribution."""
    def reason(feature: str) -> dict[str, str]:
        given = settings.reasons.get(feature)
        if given is not None:
            return {"raises": given.raises, "lowers": given.lowers}
        readable = feature.replace("_", " ")
        return {"raises": f"{readable} raised the score", "lowers": f"{readable} lowered the score"}

    return {
        "decision_threshold": decision_threshold,
        "explain": {
            "signature": EXPLAIN_SIGNATURE, "method": METHOD, "quadrature": "Gauss-Legendre",
            "steps": settings.steps, "baseline": BASELINE_TEXT, "top_k": settings.top_k,
            "score": SCORE_KEY, "baseline_score": BASELINE_KEY,
            "features": [{"name": feature, "output": attribution_key(feature), **reason(feature)}
                         for feature in features],
        },
    }


def write_metadata(directory: str, groups: Mapping[str, str | None], settings: ExplainSettings,
                   decision_threshold: float) -> Path:
    """``<SavedModel>/assets.extra/esteira_model.json``, written after the SavedModel itself."""
    features = sorted({group for group in groups.values() if group is not None})
    path = Path(directory) / METADATA_DIR / METADATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metadata(features, settings, decision_threshold), indent=1, sort_keys=True) + "\n")
    return path
