"""Number formatting and layouts as TF Serving writes them (json_tensor.cc), without a server."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from serving.protocol import json_codec
from serving.protocol.errors import ServingError


@pytest.mark.parametrize(("value", "single", "text"), [
    (3.0, True, "3.0"), (0.1, True, "0.1"), (float(np.float32(1 / 3)), True, "0.333333343"),
    (float(np.float32(1435774380)), True, "1.43577434e+09"), (9e6, True, "9e+06"), (3e-5, True, "3e-05"),
    (-0.0, True, "-0.0"), (0.123456789, False, "0.123456789"), (1 / 3, False, "0.33333333333333331"),
    (float("nan"), True, "NaN"), (float("inf"), True, "Infinity"), (float("-inf"), False, "-Infinity"),
])
def test_float_format(value: float, single: bool, text: str) -> None:
    assert json_codec.format_float(value, single) == text


def test_layouts() -> None:
    assert json_codec.write_row_predictions({"y": np.array([2.5, 3, 4.5], np.float32)}) == \
        b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'
    assert json_codec.write_row_predictions({"y": np.array([[2.5, 3], [3.5, 4]], np.float32)}) == \
        b'{\n    "predictions": [[2.5, 3.0], [3.5, 4.0]\n    ]\n}'
    assert json_codec.write_columnar_outputs({"y": np.array([3.5, 4], np.float32)}) == \
        b'{\n    "outputs": [\n        3.5,\n        4.0\n    ]\n}'
    assert json_codec.write_row_predictions({"a": np.array([[0, 0.1]], np.float32), "c": np.array([7])}) == \
        b'{\n    "predictions": [\n        {\n            "a": [0.0, 0.1],\n            "c": 7\n        }\n    ]\n}'
    assert json_codec.write_row_predictions({"y": np.array([np.nan], np.float32)}) == \
        b'{\n    "predictions": [NaN\n    ]\n}'
    assert json_codec.write_classify_results([[(b"a", 0.25), (b"b", 0.5)], [(b"", 12.0)]]) == \
        b'{\n    "results": [[["a", 0.25], ["b", 0.5]], [["", 12.0]]\n    ]\n}'
    assert json_codec.write_regress_results([3.5, 4.0]) == b'{\n    "results": [3.5, 4.0]\n}'
    error = json_codec.write_error("Servable not found for request: Latest(half)")
    assert error == b'{\n    "error": "Servable not found for request: Latest(half)"\n}' and len(error) == 63


def test_parser_accepts_rapidjson_extras() -> None:
    assert json_codec.parse_body(b'{"x": [Inf, -Inf, NaN, Infinity]} trailing')["x"][0] == float("inf")
    with pytest.raises(ServingError, match=r"The document is empty\. at offset: 3"):
        json_codec.parse_body(b"   ")


def test_ragged_and_typed_inputs() -> None:
    spec = {"x": (1, None)}  # DT_FLOAT
    tensors, row = json_codec.parse_predict_request({"instances": [[1, 2], [3, 4]]}, spec, "s")
    assert row and tensors["x"].shape == (2, 2) and tensors["x"].dtype == np.float32
    with pytest.raises(ServingError, match="Expecting tensor size: 2 but got: 1"):
        json_codec.parse_predict_request({"instances": [[1, 2], [3]]}, spec, "s")
    with pytest.raises(ServingError, match="Encountered list at unexpected size: 1 at level: 1 expected size: 2"):
        json_codec.parse_predict_request({"inputs": [[1, 2], [3]]}, spec, "s")
    with pytest.raises(ServingError, match="Type: True is not of expected type: float"):
        json_codec.parse_predict_request({"inputs": [True]}, spec, "s")
    ints = json_codec.parse_predict_request({"inputs": [1, 2]}, {"x": (3, None)}, "s")[0]["x"]  # DT_INT32
    assert ints.dtype == np.int32
    with pytest.raises(ServingError, match="Type: Number is not of expected type: int32"):
        json_codec.parse_predict_request({"inputs": [1.5]}, {"x": (3, None)}, "s")
    strings = json_codec.parse_predict_request({"instances": [{"b64": "aGk="}, "yo"]}, {"x": (7, None)}, "s")[0]["x"]
    assert list(strings) == [b"hi", b"yo"]
    with pytest.raises(ServingError) as info:
        json_codec.parse_predict_request({"inputs": [1]}, {"x": (19, None)}, "s")  # DT_HALF
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED


def test_one_array_rows_ask_for_bools_only_when_a_value_could_be_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of floats take the one-array path. A few rows are checked value by value, so a bool is seen by
    its type; many rows are checked by numpy, where a bool would become 0 or 1, so the body check is asked
    exactly then. Either way a bool among float inputs still gets the per-input path's error."""
    spec = {"a": (1, None), "b": (1, None)}  # DT_FLOAT
    asked: list[bool] = []

    def body_check(answer: bool):
        def check() -> bool:
            asked.append(answer)
            return answer
        return check

    tensors, row = json_codec.parse_predict_request({"instances": [{"a": 0.5, "b": 2.5}]}, spec, "s",
                                                    body_check(False))
    assert row and asked == [] and type(tensors).__name__ == "StackedInputs"
    np.testing.assert_array_equal(tensors["b"], np.array([2.5], np.float32))
    tensors, _ = json_codec.parse_predict_request({"instances": [{"a": 1, "b": 2.5}]}, spec, "s", body_check(False))
    assert asked == [] and tensors["a"].tolist() == [1.0] and type(tensors).__name__ == "StackedInputs"
    with pytest.raises(ServingError):
        json_codec.parse_predict_request({"instances": [{"a": True, "b": 2.5}]}, spec, "s", body_check(True))
    assert asked == []
    assert json_codec.parse_predict_request({"instances": [{"a": True, "b": 2.5}]}, spec, "s", body_check(True),
                                            numeric_only=True) is None
    many = [{"a": 0.5, "b": 2.5}] * 9
    json_codec.parse_predict_request({"instances": many}, spec, "s", body_check(False))
    assert asked == []
    tensors, _ = json_codec.parse_predict_request({"instances": [*many, {"a": 1, "b": 2.5}]}, spec, "s",
                                                  body_check(False))
    assert asked == [False] and tensors["a"].tolist()[-1] == 1.0
    fast = json_codec.parse_predict_request({"instances": [*many, {"a": True, "b": 2.5}]}, spec, "s",
                                            body_check(True), numeric_only=True)
    assert fast is None and asked == [False, True]  # the caller then re-parses on the per-input path
    with pytest.raises(ServingError):  # ... where the bool among numbers is an error, as in TF Serving
        json_codec.parse_predict_request({"instances": [*many, {"a": True, "b": 2.5}]}, spec, "s", body_check(True))
    assert asked == [False, True, True]  # one body scan for the request, though two inputs hold a 0 or 1


@pytest.mark.parametrize("check", [True, False, lambda: True])
def test_a_bool_among_numbers_is_rejected_on_every_path(check) -> None:  # type: ignore[no-untyped-def]
    """numpy would read [0.5, true] as [0.5, 1.0]; TF Serving answers INVALID_ARGUMENT."""
    spec = {"a": (1, None)}  # DT_FLOAT
    for document in ({"inputs": [0.5, True]}, {"inputs": {"a": [[0.5], [False]]}}, {"instances": [0.5, True]}):
        if check is False:  # the caller promised no bool in the body: the fast path is taken
            assert json_codec.parse_predict_request(document, spec, "s", check)[0]["a"].tolist() in (
                [0.5, 1.0], [[0.5], [0.0]])
            continue
        with pytest.raises(ServingError) as caught:
            json_codec.parse_predict_request(document, spec, "s", check)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    tensors = json_codec.parse_predict_request({"inputs": [0.0, 1.0, 2.5]}, spec, "s", check)[0]
    assert tensors["a"].tolist() == [0, 1, 2.5]


# ---- float formatting: the whole-array path against the per-value reference -------------------------

SPECIAL_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 2.5, 9e6, 3e-5, 1e-45, 1.4e-45, 1.17549435e-38, 3.4028235e38,
                  -3.4028235e38, 16777216.0, 16777217.0, 123456.7, 1234567.0, 1e16, 1e21,
                  5e-324, 2.2250738585072014e-308,
                  1.7976931348623157e308, float("nan"), float("inf"), float("-inf"), 0.30000000000000004]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_array_float_format_equals_the_per_value_reference(dtype) -> None:  # type: ignore[no-untyped-def]
    """format_floats checks round trips on the whole array; format_float is the per-value reference."""
    rng = np.random.default_rng(7)
    with np.errstate(over="ignore"):
        specials = np.array(SPECIAL_FLOATS, dtype=dtype)
    bits = rng.integers(0, 2**32 if dtype == np.float32 else 2**63, size=5000, dtype=np.uint64)
    random_bits = (bits.astype(np.uint32).view(np.float32) if dtype == np.float32 else bits.view(np.float64))
    scaled = (rng.normal(size=5000) * 10.0 ** rng.integers(-12, 12, size=5000)).astype(dtype)
    rounded = (np.round(rng.normal(size=2000) * 1e5) / 10.0 ** rng.integers(0, 6, size=2000)).astype(dtype)
    single = dtype == np.float32
    for values in (specials, random_bits, scaled, rounded):
        finite = values[np.isfinite(values)]  # the whole-array path runs only on finite arrays
        assert json_codec.format_floats(finite) == [json_codec.format_float(float(v), single) for v in finite.tolist()]
        assert json_codec.format_floats(values) == [json_codec.format_float(float(v), single) for v in values.tolist()]
    assert json_codec.format_floats(np.array([[0.5], [2.0]], np.float32)) == ["0.5", "2.0"]


# ---- the REST API's entry point: InferenceBody with the signature's InputSpec --------------------------

def test_inference_body_reads_the_signature_name_then_the_tensors_of_its_spec() -> None:
    from tensorflow.core.protobuf import meta_graph_pb2

    from serving.protocol.input_spec import InputSpec

    definition = meta_graph_pb2.SignatureDef()
    for alias in ("b", "a"):
        definition.inputs[alias].dtype = 1  # DT_FLOAT
        definition.inputs[alias].tensor_shape.dim.add(size=-1)
    spec = InputSpec.of(definition)
    assert set(spec) == {"a", "b"} and spec["a"] == (1, (-1,)) and spec.sorted_aliases == ("a", "b")
    body = json_codec.InferenceBody(b'{"signature_name": "s", "instances": [{"a": 1.5, "b": 2.5}]}', "predict")
    assert body.signature_name == "s"
    tensors, row = body.predict_inputs(spec, "s")
    assert row and tensors["a"].tolist() == [1.5] and tensors["b"].tolist() == [2.5]
    huge = json_codec.InferenceBody(b'{"instances": [{"a": 123456789012345678901234567890, "b": 1.0}]}', "predict")
    tensors, _ = huge.predict_inputs(spec, "")  # re-parsed exactly: the big integer is not read as a float first
    assert huge.exact and tensors["a"].tolist() == [float(np.float32(123456789012345678901234567890))]
    with pytest.raises(ServingError, match="Is not object"):
        json_codec.InferenceBody(b"[1]", "predict")
    with pytest.raises(ServingError, match="'signature_name' key must be a string value"):
        json_codec.InferenceBody(b'{"signature_name": 1, "instances": [1]}', "predict")
    examples = json_codec.InferenceBody(b'{"context": {"c": 1}, "examples": [{"x": 2.0}]}', "classify").examples()
    assert examples == [json_codec.features_to_example({"c": 1}).SerializeToString()
                        + json_codec.features_to_example({"x": 2.0}).SerializeToString()]
