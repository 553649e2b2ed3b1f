"""Errors a user can act on: each message names the tracking URI, model or version, and the fix."""
from __future__ import annotations

from errors import EsteiraError


class TrackingError(EsteiraError):
    """Base class of tracking errors."""


class TrackingUnavailable(TrackingError):
    """The tracking server cannot be reached or refused a call."""

    def __init__(self, uri: str, problem: str) -> None:
        self.uri = uri
        super().__init__(
            f"MLflow tracking server {uri} is not reachable ({problem}); start it, fix tracking.uri "
            "or MLFLOW_TRACKING_URI, or set tracking.required: false to log a warning instead")


class RegistryError(TrackingError):
    """A registry request names a model, version or alias that does not exist; nothing was changed."""
