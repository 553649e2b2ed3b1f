"""One error type for the whole server, carrying TF Serving's status code and exact message.

The code is a ``grpc.StatusCode`` (TF's status codes are gRPC's, number for number); the gRPC servicers
abort with it as is, and the REST API answers with :func:`http_status`, the one place that maps it.
"""
from __future__ import annotations

import grpc

from errors import EsteiraError

Code = grpc.StatusCode

# absl/TF status -> HTTP, as TF Serving's ToHTTPStatusCode maps it.
_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def http_status(code: grpc.StatusCode) -> int:
    """TF Serving's ToHTTPStatusCode: the HTTP status a REST client gets for a status code."""
    return _HTTP_STATUS.get(code, 500)


def code_from_number(number: int) -> grpc.StatusCode:
    """The status code with TF's (== gRPC's) number; UNKNOWN for a number no code has."""
    return _BY_NUMBER.get(number, Code.UNKNOWN)


class ServingError(EsteiraError):
    """A request failed with a status ``code`` (e.g. ``grpc.StatusCode.NOT_FOUND``) and a client-facing message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The code's name (``NOT_FOUND``), as metrics, the audit line and message prefixes spell it."""
        return self.code.name

    @property
    def code_number(self) -> int:
        """The code's number, as ``StatusProto.error_code`` carries it."""
        return self.code.value[0]

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    @property
    def grpc_message(self) -> str:
        # TF Serving cuts long messages for gRPC only.
        return self.message if len(self.message) <= 1024 else self.message[:1024] + "...TRUNCATED"

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def from_tf_error(exc: BaseException) -> ServingError:
    """Map a TensorFlow runtime error to its status code, keeping TF's message."""
    if isinstance(exc, ServingError):
        return exc
    number = getattr(exc, "error_code", None)
    if number is not None and number in _BY_NUMBER:
        return ServingError(_BY_NUMBER[number], getattr(exc, "message", str(exc)))
    return ServingError(Code.INTERNAL, f"{type(exc).__name__}: {exc}")
