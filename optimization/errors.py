"""Errors a user can fix; each message names the problem and the fix."""
from __future__ import annotations

from errors import EsteiraError


class OptimizationError(EsteiraError, ValueError):
    """The model or the data cannot be optimized as configured; the message says what to change."""
