"""TF1-graph SavedModels and signature-less TFLite files written the way TF Serving's test models were,
for the session servable's tests (TF Serving's ``saved_model_half_plus_three`` and
``saved_model_half_plus_two_tflite[_with_sigdef]``, rebuilt here rather than copied)."""
from __future__ import annotations

from pathlib import Path

PREDICT, CLASSIFY, REGRESS = ("tensorflow/serving/predict", "tensorflow/serving/classify",
                              "tensorflow/serving/regress")


def _scalar_info(tensor):  # type: ignore[no-untyped-def]
    """A TensorInfo declaring a scalar whatever the graph says, as old TF1 exports (half_plus_three) did."""
    import tensorflow as tf

    info = tf.compat.v1.saved_model.utils.build_tensor_info(tensor)
    info.tensor_shape.Clear()
    return info


def write_half_plus_three(export_dir: Path) -> Path:
    """y = 0.5 x + 3 in TF1 graph mode: Predict on unknown-rank ``x`` (``serving_default``) and on a
    scalar-declared ``x`` (``predict_scalar``); Regress and Classify on a serialized tf.Example fed to
    ParseExample, input and output declared scalar where the graph has a vector and a ``[?, 1]`` matrix
    (half_plus_three's declarations, which TF2's function-wrapping loader refuses)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(3.0, name="b")
        serialized = v1.placeholder(tf.string, shape=None, name="tf_example")
        parsed = tf.raw_ops.ParseExample(  # the V1 op of TF1 exports: it wants a vector of examples
            serialized=serialized, names=tf.constant([], tf.string), sparse_keys=[],
            dense_keys=[tf.constant("x")], dense_defaults=[tf.constant([], tf.float32)], sparse_types=[],
            dense_shapes=[[1]], name="ParseExample")
        x_example = tf.identity(parsed.dense_values[0], name="x_example")
        y_example = tf.identity(a * x_example + b, name="y_example")
        x = v1.placeholder(tf.float32, shape=None, name="x")
        y = tf.identity(a * x + b, name="y")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        signatures = {
            "serving_default": build({"x": info(x)}, {"y": info(y)}, PREDICT),
            "predict_scalar": build({"x": _scalar_info(x)}, {"y": info(y)}, PREDICT),
            "regress_x_to_y": build({"inputs": _scalar_info(serialized)}, {"outputs": _scalar_info(y_example)},
                                    REGRESS),
            "classify_x_to_y": build({"inputs": _scalar_info(serialized)}, {"scores": _scalar_info(y_example)},
                                     CLASSIFY),
        }
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()
    return Path(export_dir)



def example(x: float) -> bytes:
    """A serialized tf.Example with the float feature ``x``."""
    from tensorflow.core.example import example_pb2

    proto = example_pb2.Example()
    proto.features.feature["x"].float_list.value.append(x)
    return proto.SerializeToString()


def write_half_plus_two_tflite(version_dir: Path, *, with_sigdef: bool) -> Path:
    """``<version_dir>/model.tflite``: y = 0.5 x + 2 converted from a TF1 session without TFLite signatures
    (TF Serving's ``saved_model_half_plus_two_tflite``); ``with_sigdef`` names the input tensor
    ``tflite_input`` and stores a ``serving_default`` SignatureDef (alias ``x`` -> ``tflite_input:0``) in the
    ``signature_defs_metadata`` entry, as TF Serving's ``_with_sigdef`` twin does."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, shape=(1, 1), name="tflite_input" if with_sigdef else "x")
        y = tf.identity(0.5 * x + 2.0, name="y")
        model = v1.lite.TFLiteConverter.from_session(session, [x], [y]).convert()
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def({"x": info(x)}, {"y": info(y)}, PREDICT)
    if with_sigdef:
        model = with_signature_defs_metadata(model, {"serving_default": signature.SerializeToString()})
    Path(version_dir).mkdir(parents=True, exist_ok=True)
    (Path(version_dir) / "model.tflite").write_bytes(model)
    return Path(version_dir)


def with_signature_defs_metadata(model: bytes, signature_defs: dict[str, bytes]) -> bytes:
    """``model`` plus TensorFlow Lite's ``signature_defs_metadata`` entry: a FlexBuffer map of signature key
    to serialized SignatureDef, stored as FlexBuffer strings (what signature_def_util's reader takes)."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    builder = flexbuffers.Builder()
    with builder.Map():
        for key, value in sorted(signature_defs.items()):
            builder.Key(key)
            builder._WriteBlob(value, append_zero=True, type_=flexbuffers.Type.STRING)  # binary-safe String
    buffer = schema.BufferT()
    buffer.data = list(builder.Finish())
    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    parsed.buffers.append(buffer)
    metadata = schema.MetadataT()
    metadata.name, metadata.buffer = "signature_defs_metadata", len(parsed.buffers) - 1
    parsed.metadata = [*(parsed.metadata or []), metadata]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(parsed))
