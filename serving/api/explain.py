"""``:explain`` (KServe's verb) and gRPC Predict on the ``explain`` signature: the decision, its attributions
and its top reason codes in readable words.

The attributions come from the model's own ``explain`` signature (integrated gradients through the
Transform graph, models/common/explain.py); this module only words them, with the reason texts and the
decision threshold the model carries (servables/model_facts.py). An explanation is either of rows sent
now, or of a decision already taken: ``{"request_id": "<X-Request-Id of the Predict>"}`` explains the
remembered inputs with the version that answered them (the console's review channel asks so). Either
way the access audit line names the request id of the prediction it explains (``explains_request_id``).
Cost is bounded: at most MAX_EXPLAIN_ROWS rows per call, each costing the model's fixed number of
quadrature nodes.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2

from serving.api.service import Call, Service
from serving.backends import Handle
from serving.observability.feedback import RecalledPrediction, request_id
from serving.protocol import json_codec
from serving.protocol.errors import Code, ServingError, invalid_argument
from serving.protocol.example_inputs import examples_to_inputs
from serving.servables.model_facts import EXPLAIN_SIGNATURE, ExplainedFeature, ExplainFacts, ModelFacts

MAX_EXPLAIN_ROWS = 64
ATTRIBUTION_PREFIX = "attribution_"
DEFAULT_SCORE, DEFAULT_BASELINE = "probability", "baseline_probability"
REASON_OUTPUTS = ("reason_features", "reason_texts", "reason_attributions")  # added to a gRPC explain answer


def model_facts(handle: Handle) -> ModelFacts:
    """The served version's facts: the servable's in process; a remote version's when the gateway reads its
    folder (models.config's base_path mounted read-only), else none and the 0.5 rule applies."""
    if handle.local is not None:
        return handle.local.servable.facts
    return handle.facts if handle.facts is not None else ModelFacts()


def decision_threshold(handle: Handle) -> float | None:
    return model_facts(handle).decision_threshold


def require_explain_signature(handle: Handle) -> None:
    """TF Serving's FAILED_PRECONDITION for a missing signature, naming it and what produces it."""
    if EXPLAIN_SIGNATURE not in handle.signatures:
        raise ServingError(Code.FAILED_PRECONDITION, (
            f'Serving signature key "{EXPLAIN_SIGNATURE}" not found: model {handle.model} version {handle.version} '
            f"has no explanation signature (signatures: {', '.join(sorted(handle.signatures))}); models trained "
            "by Esteira's Trainer export it (models/common/explain.py)"))


def features_of(outputs: Mapping[str, np.ndarray], facts: ExplainFacts | None) -> list[ExplainedFeature]:
    """The attributed features: as the model's facts word them, else named after the outputs."""
    if facts is not None and all(feature.output in outputs for feature in facts.features):
        return list(facts.features)
    names = sorted(alias.removeprefix(ATTRIBUTION_PREFIX) for alias in outputs if alias.startswith(ATTRIBUTION_PREFIX))
    return [ExplainedFeature(name, ATTRIBUTION_PREFIX + name, f"{name} raised the score", f"{name} lowered the score")
            for name in names]


def explained_rows(outputs: Mapping[str, np.ndarray], facts: ModelFacts) -> list[dict[str, Any]]:
    """Per row: score, class at the model's threshold, baseline score, attributions, their completeness gap and
    the top-k reasons (largest |attribution| first, each with its direction and text)."""
    explain = facts.explain
    score_key = explain.score if explain else DEFAULT_SCORE
    baseline_key = explain.baseline_score if explain else DEFAULT_BASELINE
    if score_key not in outputs or baseline_key not in outputs:
        raise ServingError(Code.FAILED_PRECONDITION, (
            f'The "{EXPLAIN_SIGNATURE}" signature answered {sorted(outputs)}, without "{score_key}" and '
            f'"{baseline_key}"; it is not an Esteira explanation signature'))
    features = features_of(outputs, explain)
    top_k = explain.top_k if explain else 3
    threshold = facts.decision_threshold
    scores = np.asarray(outputs[score_key], dtype=np.float64).reshape(-1)
    baselines = np.asarray(outputs[baseline_key], dtype=np.float64).reshape(-1)
    matrix = np.stack([np.asarray(outputs[f.output], dtype=np.float64).reshape(-1) for f in features], axis=1)
    rows = []
    for row, (score, baseline) in enumerate(zip(scores.tolist(), baselines.tolist(), strict=True)):
        values = matrix[row]
        order = np.argsort(-np.abs(values), kind="stable")[:top_k]
        rows.append({
            "probability": score,
            "class": int(score >= 0.5) if threshold is None else int(score > threshold),
            "baseline_probability": baseline,
            "attributions": {f.name: float(v) for f, v in zip(features, values.tolist(), strict=True)},
            "completeness_error": float(values.sum() - (score - baseline)),
            "reasons": [{"feature": features[i].name, "attribution": float(values[i]),
                         "direction": "raises" if values[i] > 0 else "lowers",
                         "text": features[i].raises if values[i] > 0 else features[i].lowers}
                        for i in order.tolist()],
        })
    return rows


def reason_outputs(outputs: Mapping[str, np.ndarray], facts: ModelFacts) -> dict[str, np.ndarray]:
    """The top reasons as [batch, k] tensors, for a gRPC client of the explain signature."""
    rows = explained_rows(outputs, facts)
    width = max((len(row["reasons"]) for row in rows), default=0)
    names = np.full((len(rows), width), b"", dtype=object)
    texts = np.full((len(rows), width), b"", dtype=object)
    values = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, reason in enumerate(row["reasons"]):
            names[i, j], texts[i, j] = reason["feature"].encode(), reason["text"].encode()
            values[i, j] = reason["attribution"]
    return dict(zip(REASON_OUTPUTS, (names, texts, values), strict=True))


def check_rows(inputs: Mapping[str, np.ndarray]) -> None:
    rows = max((np.shape(value)[0] for value in inputs.values() if np.ndim(value)), default=0)
    if rows > MAX_EXPLAIN_ROWS:
        raise invalid_argument(f"{rows} rows in one explanation request; explain at most {MAX_EXPLAIN_ROWS} rows "
                               "per request (each costs the model's quadrature nodes in gradient rows)")


def _plain(value: Any) -> Any:
    """A remembered input value as JSON: lists for arrays, text for UTF-8 bytes, else TF Serving's b64 object."""
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def input_rows(inputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """The remembered inputs, one object per row, as a review shows them."""
    arrays = {alias: np.asarray(value) for alias, value in inputs.items()}
    count = max((a.shape[0] for a in arrays.values() if a.ndim), default=0)
    return [{alias: _plain(a[row]) for alias, a in arrays.items()} for row in range(count)]


def _recalled_inputs(recalled: RecalledPrediction, handle: Handle) -> Mapping[str, np.ndarray]:
    """The remembered inputs, if the explain signature takes the same ones as the signature that answered."""
    spec = handle.input_spec(EXPLAIN_SIGNATURE)
    if set(recalled.inputs) == set(spec):
        return recalled.inputs
    if _serialized_examples(recalled, handle):
        (examples,) = recalled.inputs.values()
        return examples_to_inputs(np.asarray(examples).reshape(-1).tolist(), spec)
    raise ServingError(Code.FAILED_PRECONDITION, (
        f"Request id '{recalled.request_id}' was answered by signature \"{recalled.signature}\" with inputs "
        f"{sorted(recalled.inputs)}; the \"{EXPLAIN_SIGNATURE}\" signature takes {sorted(spec)}: a decision can be "
        "explained by its request id when it was taken on the raw features (serving_raw) or on serialized "
        "tf.Examples (serving_default)"))


def _serialized_examples(recalled: RecalledPrediction, handle: Handle) -> bool:
    """Whether the remembered decision's one input is the answering signature's string tensor of tf.Examples."""
    if len(recalled.inputs) != 1 or recalled.signature not in handle.signatures:
        return False
    spec = handle.input_spec(recalled.signature)
    return len(spec) == 1 and set(spec) == set(recalled.inputs) and next(iter(spec.values()))[0] == types_pb2.DT_STRING


async def explain_rest(service: Service, call: Call, version: int | None, label: str | None, body: bytes,
                       headers: Mapping[str, str]) -> bytes:
    """``POST /v1/models/{name}[/versions/N|/labels/L]:explain``."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    recalled = None
    if isinstance(document, dict) and "request_id" in document:
        extra = sorted(set(document) - {"request_id"})
        if extra or not isinstance(document["request_id"], str):
            raise invalid_argument('An explanation of a past decision is {"request_id": "<its X-Request-Id>"} '
                                   f"alone; remove {extra or ['the non-string request_id']}")
        recalled = service.memory.recall(call.model, request_id(document["request_id"]))
        if version is not None and version != recalled.version:
            raise invalid_argument(f"Request id '{recalled.request_id}' was answered by version {recalled.version}, "
                                   f"not {version}; explain it without a version in the path")
        handle = await service.resolve(call.model, recalled.version, None)
        call.version = str(handle.version)
        require_explain_signature(handle)
        inputs = _recalled_inputs(recalled, handle)
        call.explains = recalled.request_id
    else:
        parsed = json_codec.InferenceBody(body, "predict")
        if parsed.signature_name not in ("", EXPLAIN_SIGNATURE):
            raise invalid_argument(f'An explanation runs the "{EXPLAIN_SIGNATURE}" signature; remove '
                                   f'"signature_name": "{parsed.signature_name}"')
        handle = await service.resolve(call.model, version, label)
        call.version = str(handle.version)
        require_explain_signature(handle)
        inputs, _row_format = parsed.predict_inputs(handle.input_spec(EXPLAIN_SIGNATURE), EXPLAIN_SIGNATURE)
        call.explains = request_id(headers["x-explains-request-id"]) if headers.get("x-explains-request-id") \
            else call.request_id
    check_rows(inputs)
    outputs, served = await service.bounded(service.backend.predict(handle, EXPLAIN_SIGNATURE, inputs))
    call.version = str(served)
    facts = model_facts(handle)
    answer: dict[str, Any] = {
        "model_spec": {"name": call.model, "version": str(served), "signature_name": EXPLAIN_SIGNATURE},
        "explains_request_id": call.explains,
        "decision_threshold": facts.decision_threshold,
        "method": _method(facts),
        "predictions": explained_rows(outputs, facts),
    }
    if recalled is not None:
        answer["decision"] = {"request_id": recalled.request_id, "version": recalled.version,
                              "signature_name": recalled.signature, "scores": recalled.scores,
                              "classes": recalled.classes, "inputs": input_rows(recalled.inputs),
                              "forgotten_in_seconds": round(recalled.expires_in_seconds, 1)}
    return json.dumps(answer, indent=1).encode()


def _method(facts: ModelFacts) -> dict[str, Any]:
    explain = facts.explain
    if explain is None:
        return {"method": "integrated gradients", "note": "the model carries no explanation facts file"}
    return {"method": explain.method, "quadrature": explain.quadrature, "steps": explain.steps,
            "baseline": explain.baseline, "top_k": explain.top_k}
