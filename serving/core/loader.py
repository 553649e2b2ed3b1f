"""Turning a version folder into a servable ready for traffic (TF Serving's Loader): open the SavedModel (or
its model.tflite), replay the warm-up requests, read the drift reference."""
from __future__ import annotations

import logging
import threading
from typing import Any

from serving.core.source import fingerprint
from serving.observability.drift import ReferenceFormatError, read_reference
from serving.observability.metrics import Registry
from serving.protocol.errors import Code, ServingError
from serving.servables.saved_model import SavedModelServable
from serving.servables.tflite import TfLiteServable, has_tflite_model
from serving.servables.warmup import warm_up

log = logging.getLogger("serving.models.manager")  # the name operators see in log lines; kept from before the move


def open_servable(name: str, number: int, path: str, tags: tuple[str, ...],
                  prefer_tflite_model: bool) -> SavedModelServable:
    """TF Serving's choice: the version's model.tflite when preferred and present, else its SavedModel."""
    if prefer_tflite_model and has_tflite_model(path):
        return TfLiteServable(name, number, path, tags)
    return SavedModelServable(name, number, path, tags)


def load(servable: SavedModelServable, *, metrics: Registry, enable_warmup: bool, warmup_iterations: int,
         expected_fingerprint: tuple) -> Any:
    """Load and warm up ``servable``; returns its drift reference (None without one or with a bad one).
    Fails (raises) when loading or warm-up fails, or when the folder changed meanwhile (retried later)."""
    servable.load(prepare=False)
    if enable_warmup:
        warm_up(servable, metrics, warmup_iterations)
    if fingerprint(servable.path) != expected_fingerprint:
        raise ServingError(Code.ABORTED, f"version folder {servable.path} changed while it was loading; "
                                         f"it will be retried")
    try:
        return read_reference(servable.path)
    except ReferenceFormatError as exc:
        log.warning("drift metrics off for %s version %d: %s", servable.name, servable.version, exc)
        return None


def prepare_in_background(servable: SavedModelServable) -> None:
    """The version serves (through the public signature call) while its faster entry points are checked
    and switched on, off the path to AVAILABLE."""
    threading.Thread(target=_prepare, args=(servable,), name="model-prepare", daemon=True).start()


def _prepare(servable: SavedModelServable) -> None:
    try:
        servable.prepare()
    except Exception:  # the public call keeps serving
        log.exception("could not prepare the fast call paths of %s version %d", servable.name, servable.version)
