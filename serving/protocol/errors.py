"""One error type for the whole server, carrying TF Serving's status code and exact message."""
from __future__ import annotations

import grpc

# absl/TF status -> HTTP, as TF Serving's ToHTTPStatusCode maps it.
HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# tensorflow.error.Code numbers (== gRPC status numbers).
CODE_NUMBER: dict[str, int] = {code.name: code.value[0] for code in grpc.StatusCode}


class ServingError(Exception):
    """A request failed with a TF status ``code`` (e.g. ``"NOT_FOUND"``) and a client-facing message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return getattr(grpc.StatusCode, self.code, grpc.StatusCode.UNKNOWN)

    @property
    def grpc_message(self) -> str:
        # TF Serving cuts long messages for gRPC only.
        return self.message if len(self.message) <= 1024 else self.message[:1024] + "...TRUNCATED"

    def __repr__(self) -> str:
        return f"ServingError({self.code}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def from_tf_error(exc: BaseException) -> ServingError:
    """Map a TensorFlow runtime error to its status code, keeping TF's message."""
    code = getattr(exc, "error_code", None)
    if isinstance(exc, ServingError):
        return exc
    if code is not None:
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return ServingError(status.name, getattr(exc, "message", str(exc)))
    return ServingError("INTERNAL", f"{type(exc).__name__}: {exc}")


def grpc_code_name(code: grpc.StatusCode) -> str:
    return code.name
