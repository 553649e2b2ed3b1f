"""A TF1 SavedModel run as TF Serving runs it: one session over its MetaGraph, fed and fetched by tensor name.

TensorFlow's function-wrapping loader (``tf.saved_model.load``) refuses TF1 graphs whose signatures declare
shapes the graph does not have (TF Serving's ``saved_model_half_plus_three`` declares a scalar where the
graph parses a vector of tf.Examples into a ``[?, 1]`` matrix). TF Serving never wraps: it restores the
MetaGraph into a session and runs each signature by its tensors' names, so declared shapes are only
documentation. This module does the same through ``tf.compat.v1`` (``saved_model.loader.load``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2

from serving.protocol.errors import Code, ServingError, from_tf_error


class SessionSignature:
    """One SignatureDef over the session: inputs fed and outputs fetched by tensor name, through one
    callable made at load (TensorFlow's ``Session::MakeCallable``)."""

    def __init__(self, session: Any, key: str, definition: meta_graph_pb2.SignatureDef) -> None:
        for kind, infos in (("input", definition.inputs), ("output", definition.outputs)):
            for alias, info in infos.items():
                if info.WhichOneof("encoding") != "name":
                    raise ServingError(
                        Code.UNIMPLEMENTED,
                        f"Signature {key} {kind} {alias} is a {info.WhichOneof('encoding')} tensor; only dense "
                        "tensors named in the SignatureDef are served from a TF1 graph. Re-export the signature "
                        "with dense inputs and outputs")
        from tensorflow.core.protobuf import config_pb2

        self.inputs = tuple(sorted(definition.inputs))
        self.outputs = tuple(sorted(definition.outputs))
        graph = session.graph
        try:
            feeds = [graph.get_tensor_by_name(definition.inputs[alias].name).name for alias in self.inputs]
            fetches = [graph.get_tensor_by_name(definition.outputs[alias].name).name for alias in self.outputs]
        except (KeyError, ValueError) as exc:
            raise ServingError(Code.INVALID_ARGUMENT,
                               f"Signature {key} names a tensor its graph does not have: {exc}. Fix the "
                               "SignatureDef's tensor names or re-export the model") from None
        # Session::MakeCallable, as TF Serving runs a signature: the public make_callable would check each
        # feed's shape against the graph's in Python first (TF Serving never does; the graph decides).
        options = config_pb2.CallableOptions(feed=feeds, fetch=fetches)
        self._run = session._make_callable_from_options(options)

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        try:
            values = self._run(*(inputs[alias] for alias in self.inputs))
        except Exception as exc:
            raise from_tf_error(exc) from exc
        return {alias: np.asarray(value) for alias, value in zip(self.outputs, values, strict=True)}


class SessionModel:
    """The restored MetaGraph and its session; ``signature`` builds the runner of one SignatureDef."""

    def __init__(self, path: str, tags: Sequence[str]) -> None:
        import tensorflow as tf

        v1 = tf.compat.v1
        self.graph = tf.Graph()
        self.session = v1.Session(graph=self.graph)
        try:
            with self.graph.as_default():
                v1.saved_model.loader.load(self.session, list(tags), path)
        except Exception as exc:
            self.session.close()
            raise from_tf_error(exc) from exc

    def signatures(self, definitions: Mapping[str, meta_graph_pb2.SignatureDef]) -> dict[str, SessionSignature]:
        return {key: SessionSignature(self.session, key, definition) for key, definition in definitions.items()}

    def close(self) -> None:
        self.session.close()
