"""A version served from ``<version>/model.tflite`` (TF Serving's ``--prefer_tflite_model``).

The file's signatures are the version's signatures, under the same names as the SavedModel's it was
converted from; their SignatureDefs are built from the TFLite signature's tensors (the batch
dimension always open, as the converted signatures take any number of rows). A file converted without
TFLite signatures (a TF1 graph) is served as TF Serving serves it: the SignatureDefs its metadata carries,
else one ``serving_default`` keyed by tensor names. One interpreter per
version, guarded by a lock: a TFLite interpreter must not run two calls at once.
"""
from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.protocol.errors import Code, ServingError, invalid_argument
from serving.servables.saved_model import SavedModelServable
from serving.servables.signature import DEFAULT_SIGNATURE, PREDICT_METHOD, Signature, check_inputs

TFLITE_FILE = "model.tflite"
SIGNATURE_DEFS_METADATA = "signature_defs_metadata"  # TensorFlow Lite's kSignatureDefsMetadataName, TF Serving reads it


def has_tflite_model(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / TFLITE_FILE).is_file()


def _dtype_enum(dtype: Any) -> int:
    if np.dtype(dtype).kind in "SOU":
        return types_pb2.DT_STRING
    import tensorflow as tf

    return tf.as_dtype(np.dtype(dtype)).as_datatype_enum


def _tensor_info(detail: Mapping[str, Any]) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=detail["name"], dtype=_dtype_enum(detail["dtype"]))
    shape = list(detail.get("shape_signature", detail["shape"]))
    for index, size in enumerate(shape):
        info.tensor_shape.dim.add(size=-1 if index == 0 else int(size))
    return info


def legacy_tensor_name(name: str) -> str:
    """A TF tensor name as early TFLite converters stored it: without its ``:<output index>``."""
    return name.split(":", 1)[0]


def signature_defs_metadata(model: bytes) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs stored in a TFLite file's ``signature_defs_metadata`` (TensorFlow's
    signature_def_util: a FlexBuffer map of signature key to serialized SignatureDef); empty without it."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    root = schema.Model.GetRootAsModel(model, 0)
    for index in range(root.MetadataLength()):
        metadata = root.Metadata(index)
        if metadata.Name() != SIGNATURE_DEFS_METADATA.encode():
            continue
        try:
            data = root.Buffers(metadata.Buffer()).DataAsNumpy().tobytes()
            stored = flexbuffers.GetRoot(data).AsMap
            return {key.AsKey: meta_graph_pb2.SignatureDef.FromString(value.AsStringBytes)
                    for key, value in zip(stored.Keys, stored.Values, strict=True)}
        except Exception as exc:  # noqa: BLE001 - whatever the FlexBuffer or proto reader raises
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return {}


class TensorRunner:
    """A signature of a file without TFLite signatures: inputs set and outputs read by tensor index,
    each input resized to the request's shape when it differs (TF Serving's TfLiteSession::Run)."""

    def __init__(self, interpreter: Any, inputs: Mapping[str, int], outputs: Mapping[str, int]) -> None:
        self._interpreter, self._inputs, self._outputs = interpreter, dict(inputs), dict(outputs)

    def __call__(self, **feed: np.ndarray) -> dict[str, np.ndarray]:
        interpreter = self._interpreter
        details = {detail["index"]: detail for detail in interpreter.get_input_details()}
        resized = False
        for alias, index in self._inputs.items():
            if tuple(details[index]["shape"]) != feed[alias].shape:
                interpreter.resize_tensor_input(index, list(feed[alias].shape))
                resized = True
        if resized:
            interpreter.allocate_tensors()
        for alias, index in self._inputs.items():
            interpreter.set_tensor(index, feed[alias])
        interpreter.invoke()
        return {alias: interpreter.get_tensor(index) for alias, index in self._outputs.items()}


class TfLiteServable(SavedModelServable):
    """SavedModelServable's contract (signatures, predict, feed_graph) over a TFLite interpreter."""

    def __init__(self, name: str, version: int, path: str | os.PathLike[str], tags: Sequence[str] = ("serve",)) -> None:
        super().__init__(name, version, path, tags)
        self._interpreter: Any = None
        self._lock = threading.Lock()

    def load(self, prepare: bool = True) -> None:
        """Read and check the flatbuffer; a corrupt or signature-less file fails with the reason and the fix."""
        import tensorflow as tf

        file = Path(self.path) / TFLITE_FILE
        try:
            with warnings.catch_warnings():  # TF 2.21 announces the move to ai-edge-litert on every construction
                warnings.simplefilter("ignore", UserWarning)
                self._interpreter = tf.lite.Interpreter(model_content=file.read_bytes())
            self._interpreter.allocate_tensors()  # ops this interpreter lacks (Flex without its delegate) fail here
            listed = self._interpreter.get_signature_list()
        except Exception as exc:  # noqa: BLE001 - whatever the flatbuffer reader raises becomes the version's status
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Failed to load TFLite model {file}: {exc}. Replace the version's {TFLITE_FILE} with a valid "
                f"TFLite file (e.g. from the ModelOptimizer), or remove it to serve the SavedModel") from None
        if not listed:  # a TF1 conversion: TF Serving's SignatureDefs (its metadata's, else one from the tensors)
            self._load_tensor_signatures(file)
            return
        for key in listed:
            runner = self._interpreter.get_signature_runner(key)
            definition = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
            for alias, detail in runner.get_input_details().items():
                definition.inputs[alias].CopyFrom(_tensor_info(detail))
            for alias, detail in runner.get_output_details().items():
                definition.outputs[alias].CopyFrom(_tensor_info(detail))
            self.signatures[key] = Signature(key, definition, runner)
        self.definitions = {k: s.definition for k, s in self.signatures.items()}

    def _load_tensor_signatures(self, file: Path) -> None:
        """A file without TFLite signatures is served as TF Serving serves it (tflite_session.cc): the
        SignatureDefs in its ``signature_defs_metadata`` (tensor names matched exactly, else without their
        ``:0``), otherwise one ``serving_default`` keyed by the input and output tensor names."""
        interpreter = self._interpreter
        inputs = {detail["name"]: detail for detail in interpreter.get_input_details()}
        outputs = {detail["name"]: detail for detail in interpreter.get_output_details()}
        try:
            stored = signature_defs_metadata(file.read_bytes())
        except ValueError as exc:
            raise ServingError(Code.INVALID_ARGUMENT, f"Invalid SignatureDefs found in TfLite model {file}: {exc}. "
                               f"Rewrite its {SIGNATURE_DEFS_METADATA} metadata or remove it") from None
        if not stored:
            definition = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
            for name, detail in inputs.items():
                definition.inputs[legacy_tensor_name(name)].CopyFrom(_tensor_info(detail))
            for name, detail in outputs.items():
                definition.outputs[legacy_tensor_name(name)].CopyFrom(_tensor_info(detail))
            stored = {DEFAULT_SIGNATURE: definition}
        for key, definition in stored.items():
            for kind, infos, tensors in (("input", definition.inputs, inputs), ("output", definition.outputs, outputs)):
                for alias, info in infos.items():
                    name = info.name if info.name in tensors else legacy_tensor_name(info.name)
                    if name not in tensors:
                        raise ServingError(
                            Code.INVALID_ARGUMENT,
                            f"Signature {key} {kind} {alias} references an unknown tensor {info.name!r} of TFLite "
                            f"model {file} (its {kind}s: {sorted(tensors)}); "
                            f"fix the {SIGNATURE_DEFS_METADATA} metadata")
                    info.name = name
            runner = TensorRunner(interpreter, {a: inputs[i.name]["index"] for a, i in definition.inputs.items()},
                                  {a: outputs[i.name]["index"] for a, i in definition.outputs.items()})
            self.signatures[key] = Signature(key, definition, runner)
        self.definitions = {k: s.definition for k, s in self.signatures.items()}

    def prepare(self) -> None:
        """Nothing to switch: the interpreter has a single call path."""

    def unload(self) -> None:
        super().unload()
        self._interpreter = None

    def predict(self, signature: Signature, inputs: Mapping[str, np.ndarray], output_filter: Iterable[str] = (),
                checked: bool = False) -> dict[str, np.ndarray]:
        if not checked:
            check_inputs(signature, inputs)
        outputs = self.feed_graph(signature, inputs)
        wanted = list(output_filter)
        return {alias: outputs[alias] for alias in wanted} if wanted else outputs

    def feed_graph(self, signature: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the signature; the interpreter resizes to the inputs' shapes or refuses with its reason."""
        feed = {alias: np.asarray(list(value.ravel()), dtype=bytes).reshape(value.shape) if value.dtype.kind == "O"
                else value for alias, value in inputs.items()}
        try:
            with self._lock:
                return {alias: np.array(value) for alias, value in signature.function(**feed).items()}
        except Exception as exc:  # noqa: BLE001 - the interpreter's refusal is the caller's error
            raise invalid_argument(
                f"TFLite model {self.name} version {self.version} refused the inputs: {exc}") from None

    def classify(self, signature: Signature, examples: Sequence[bytes]) -> list:
        raise ServingError(Code.UNIMPLEMENTED, "Classify is not served from a TFLite model; use Predict, or serve "
                                            "without --prefer_tflite_model")

    def regress(self, signature: Signature, examples: Sequence[bytes]) -> list[float]:
        raise ServingError(Code.UNIMPLEMENTED, "Regress is not served from a TFLite model; use Predict, or serve "
                                            "without --prefer_tflite_model")
