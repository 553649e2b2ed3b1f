"""Remembered tf.Examples read back as a raw-feature signature's tensors, and the refusals that name why not."""
from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import types_pb2

from serving.protocol.errors import Code, ServingError
from serving.protocol.example_inputs import examples_to_inputs
from serving.protocol.input_spec import InputSpec
from serving.protocol.json_codec import features_to_example

SPEC = InputSpec({"amount": (types_pb2.DT_FLOAT, (-1,)), "merchant": (types_pb2.DT_STRING, (-1,)),
                  "count": (types_pb2.DT_INT64, (-1,)), "history": (types_pb2.DT_FLOAT, (-1, 3))})


def _serialized(**features: object) -> bytes:
    return features_to_example(features).SerializeToString()


def test_each_input_is_read_by_its_dtype_and_shape() -> None:
    rows = [_serialized(amount=12.5, merchant="m-1", count=3, history=[1.0, 2.0, 3.0]),
            _serialized(amount=0.25, merchant="m-2", count=0, history=[0.0, 0.5, 1.0])]
    inputs = examples_to_inputs(rows, SPEC)
    assert inputs["amount"].dtype == np.float32 and inputs["amount"].tolist() == [12.5, 0.25]
    assert inputs["merchant"].tolist() == [b"m-1", b"m-2"]
    assert inputs["count"].dtype == np.int64 and inputs["count"].tolist() == [3, 0]
    assert inputs["history"].shape == (2, 3) and inputs["history"][1].tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(("row", "named"), [
    (_serialized(amount=1.0, merchant="m", count=1), "has no feature 'history'"),
    (_serialized(amount=[1.0, 2.0], merchant="m", count=1, history=[1.0, 2.0, 3.0]), "takes one value per row"),
    (_serialized(amount=1.0, merchant="m", count=1, history=[1.0, 2.0]), "the signature takes [3]"),
    (_serialized(amount="high", merchant="m", count=1, history=[1.0, 2.0, 3.0]),
     "holds feature 'amount' as bytes_list"),
    (b"\xff\xff not a proto", "is not a serialized tf.Example"),
], ids=["missing feature", "two values for a scalar", "short list", "wrong kind", "not a proto"])
def test_an_example_the_signature_cannot_take_is_refused_naming_why(row: bytes, named: str) -> None:
    with pytest.raises(ServingError) as refused:
        examples_to_inputs([row], SPEC)
    assert refused.value.code is Code.FAILED_PRECONDITION
    assert named in str(refused.value)
