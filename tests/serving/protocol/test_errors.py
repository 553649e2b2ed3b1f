"""ServingError carries a grpc.StatusCode; the HTTP status of each code is TF Serving's ToHTTPStatusCode."""
from __future__ import annotations

import grpc
import pytest

from serving.protocol.errors import ServingError, code_from_number, from_tf_error, http_status

# tensorflow_serving/util/status_util's ToHTTPStatusCode, code by code.
TF_SERVING_HTTP = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_every_code_maps_to_tf_servings_http_status(code: grpc.StatusCode) -> None:
    assert http_status(code) == TF_SERVING_HTTP[code.name]
    error = ServingError(code, "why")
    assert error.code is code and error.http_status == TF_SERVING_HTTP[code.name]
    assert error.code_name == code.name and error.code_number == code.value[0]
    assert code_from_number(code.value[0]) is code


def test_unknown_numbers_and_foreign_errors() -> None:
    assert code_from_number(99) is grpc.StatusCode.UNKNOWN
    assert from_tf_error(ValueError("boom")).code is grpc.StatusCode.INTERNAL
    assert from_tf_error(ValueError("boom")).message == "ValueError: boom"

    class TfLike(Exception):
        error_code = 3
        message = "graph says no"

    converted = from_tf_error(TfLike())
    assert converted.code is grpc.StatusCode.INVALID_ARGUMENT and converted.message == "graph says no"


def test_grpc_message_is_cut_as_tf_serving_cuts_it() -> None:
    long = ServingError(grpc.StatusCode.INVALID_ARGUMENT, "x" * 2000)
    assert long.grpc_message == "x" * 1024 + "...TRUNCATED" and long.message == "x" * 2000
