"""One loaded SavedModel version: its signatures, and Predict/Classify/Regress against them.

Runs in worker threads; TensorFlow releases the GIL while it computes. Calls take the fastest entry point
``call_paths.prepare`` has shown to agree with the public call; the manager runs :meth:`prepare` right after
the version becomes AVAILABLE (until then the keyword call serves). A TF1 graph that TensorFlow's function
loader refuses runs in a session instead, fed by tensor name as TF Serving feeds it (servables/session.py).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.protocol.errors import Code, ServingError, from_tf_error, invalid_argument
from serving.protocol.tensors import StackedInputs, dtype_name
from serving.servables import call_paths
from serving.servables.call_paths import to_tensor
from serving.servables.model_facts import ModelFacts, read_model_facts
from serving.servables.session import SessionModel, SessionSignature
from serving.servables.signature import (
    DEFAULT_SIGNATURE,
    INIT_OP_SIGNATURE,
    Signature,
    check_inputs,
    read_meta_graph,
)

log = logging.getLogger("serving.models.manager")  # the name operators see for load lines


class SavedModelServable:
    """A SavedModel version loaded into this process."""

    def __init__(self, name: str, version: int, path: str | os.PathLike[str], tags: Sequence[str] = ("serve",)) -> None:
        self.name = name
        self.version = version
        self.path = str(path)
        self.tags = tuple(tags)
        self.signatures: dict[str, Signature] = {}
        self.definitions: dict[str, meta_graph_pb2.SignatureDef] = {}  # built once, handed to every request
        self.meta_graph: meta_graph_pb2.MetaGraphDef | None = None
        self.facts = ModelFacts()  # its decision threshold and reason texts (servables/model_facts.py)
        self._model: Any = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def load(self, prepare: bool = True) -> None:
        """Load the SavedModel. Signatures answer through the public call until :meth:`prepare` has
        checked the faster entry points; ``prepare=False`` leaves that to the caller (the manager runs it
        right after the version becomes AVAILABLE, so checking and tracing do not delay availability)."""
        import tensorflow as tf

        self.meta_graph = read_meta_graph(self.path, self.tags)
        self.facts = read_model_facts(self.path)
        try:
            self._model = tf.saved_model.load(self.path, tags=list(self.tags))
        except Exception as exc:  # any load failure becomes the version's status
            if self.meta_graph.HasField("object_graph_def"):  # a TF2 SavedModel: nothing else can read it
                raise from_tf_error(exc) from exc
            self._load_session(exc)
            return
        loaded = dict(self._model.signatures)
        for key, definition in self.meta_graph.signature_def.items():
            self.signatures[key] = Signature(key, definition, loaded.get(key))
        self.definitions = {k: s.definition for k, s in self.signatures.items()}
        if prepare:
            self.prepare()

    def _load_session(self, refused: BaseException) -> None:
        """A TF1 graph TF2's wrapping refused (e.g. declared shapes the graph does not have): restored into a
        session and run by tensor name, as TF Serving runs every SavedModel (servables/session.py)."""
        assert self.meta_graph is not None
        self._model = SessionModel(self.path, self.tags)
        definitions = {key: d for key, d in self.meta_graph.signature_def.items() if key != INIT_OP_SIGNATURE}
        runners = self._model.signatures(definitions)
        self.signatures = {key: Signature(key, definitions[key], runner) for key, runner in runners.items()}
        self.definitions = {k: s.definition for k, s in self.signatures.items()}
        log.info("%s version %d: TensorFlow's function loader refused the TF1 graph (%s: %s); serving it from a "
                 "session over its MetaGraph", self.name, self.version, type(refused).__name__,
                 str(refused).splitlines()[0][:200])

    @property
    def in_session(self) -> bool:
        """Whether the version runs in a TF1 session (fed by tensor name) rather than as TF2 functions."""
        return isinstance(self._model, SessionModel)

    def prepare(self) -> None:
        """Switch each signature to its fastest entry point shown to agree with the public call (call_paths)."""
        if self.in_session:
            return  # one way in: the session's callable
        for signature in list(self.signatures.values()):
            call_paths.prepare(signature)

    def unload(self) -> None:
        if self.in_session:
            self._model.close()
        self.signatures = {}
        self.definitions = {}
        self._model = None

    # ---- inference ---------------------------------------------------------------------------

    def signature(self, name: str) -> Signature:
        signature = self.signatures.get(name or DEFAULT_SIGNATURE)
        if signature is None or signature.function is None:
            raise ServingError(Code.FAILED_PRECONDITION,
                               f'Serving signature key "{name or DEFAULT_SIGNATURE}" not found.')
        return signature

    def predict(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_filter: Iterable[str] = (),
        checked: bool = False,
    ) -> dict[str, np.ndarray]:
        if not checked:
            check_inputs(signature, inputs)
        outputs = self._call(signature, inputs)
        wanted = list(output_filter)
        if wanted:
            return {alias: outputs[alias] for alias in wanted}
        return outputs

    def feed_graph(self, signature: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run inputs whose shapes differ from the SignatureDef as TF Serving runs them: fed to the graph,
        which answers or refuses with its own reason (e.g. ``[2.0]`` to a ``[None, 1]`` signature that
        computes elementwise). The flat call skips the Python layer's shape check of the public call."""
        fn = signature.function
        if self.in_session:
            return fn(**inputs)
        try:
            flat = [to_tensor(inputs[alias], dtype) for alias, dtype in signature.flat_inputs]
            result = fn._call_flat(flat, fn.captured_inputs)
        except Exception as exc:  # the graph's refusal keeps its status code and reason
            raise from_tf_error(exc) from exc
        return {alias: tensor.numpy() for alias, tensor in result.items()}

    def _call(self, signature: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if type(signature.function) is SessionSignature:
            return signature.function(**inputs)
        if signature.fused is not None:
            try:
                if type(inputs) is StackedInputs and inputs.aliases == signature.sorted_aliases:
                    matrix = inputs.matrix
                else:
                    matrix = np.stack([inputs[alias] for alias, _ in signature.flat_inputs])
                return signature.fused(matrix)
            except Exception:  # noqa: BLE001 - unequal lengths, or a runtime error: the flat call gives TF's own answer
                pass
        spec = signature.input_spec
        try:
            if signature.flat_runner is not None:
                result = signature.flat_runner(
                    [to_tensor(inputs[alias], dtype) for alias, dtype in signature.flat_inputs])
            else:
                result = signature.function(**{alias: to_tensor(v, spec[alias][0]) for alias, v in inputs.items()})
        except ServingError:
            raise
        except Exception as exc:  # TF runtime errors keep their status code
            raise from_tf_error(exc) from exc
        return {alias: tensor.numpy() for alias, tensor in result.items()}

    def classify(self, signature: Signature, examples: Sequence[bytes]) -> list[list[tuple[bytes, float]]]:
        outputs = self._run_examples(signature, examples)
        classes, scores = outputs.get("classes"), outputs.get("scores")
        if classes is None and scores is None:
            raise invalid_argument(
                f"Expected classification signature outputs to contain classes and/or scores; got {sorted(outputs)}"
            )
        batch = len(examples)
        for name, array in (("classes", classes), ("scores", scores)):
            if array is not None and (array.ndim != 2 or array.shape[0] != batch):
                raise invalid_argument(
                    f"Expected Tensor shape: [{batch} num_classes] but got {list(array.shape)} for output {name}"
                )
        present = classes if classes is not None else scores
        assert present is not None  # refused above when neither is there
        width = present.shape[1]
        results = []
        for row in range(batch):
            results.append([
                (
                    classes[row, k] if classes is not None else b"",
                    float(scores[row, k]) if scores is not None else 0.0,
                )
                for k in range(width)
            ])
        return results

    def regress(self, signature: Signature, examples: Sequence[bytes]) -> list[float]:
        outputs = self._run_examples(signature, examples)
        if "outputs" not in outputs:
            raise invalid_argument(f"No regression outputs found in SignatureDef: {signature.name}")
        values = outputs["outputs"]
        if values.dtype.kind != "f":
            raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {values.dtype}")
        if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)) or values.shape[0] != len(examples):
            raise invalid_argument(
                f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                f"but got {list(values.shape)}"
            )
        return [float(v) for v in values.ravel()]

    def _run_examples(self, signature: Signature, examples: Sequence[bytes]) -> dict[str, np.ndarray]:
        spec = signature.input_spec
        if len(spec) != 1:
            raise invalid_argument("Expected one input Tensor.")
        alias = next(iter(spec))
        if spec[alias][0] != types_pb2.DT_STRING:
            raise invalid_argument(
                f"Expected input Tensor of DT_STRING (serialized tf.Example protos) "
                f"but got {dtype_name(spec[alias][0])}"
            )
        if not examples:
            raise invalid_argument("Input is empty.")
        array = np.empty(len(examples), dtype=object)
        array[:] = list(examples)
        return self._call(signature, {alias: array})
