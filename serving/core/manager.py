"""The manager (TF Serving's AspiredVersionsManager): owns every model version, polls the source, loads
and unloads as the version policy says, answers which version a request gets, and applies config reloads.

The rest of the lifecycle lives beside it: ``source.py`` (version folders), ``version_policy.py`` (what to
serve, load and unload), ``loader.py`` (folder -> warmed-up servable), ``versions.py`` (states). A version
that fails to load is reported (state END with its error) while the other versions keep serving.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.core import loader
from serving.core.source import fingerprint, poll_versions
from serving.core.version_policy import aspired_versions, needs_load, to_unload
from serving.core.versions import AVAILABLE, END, LOADING, UNLOADING, Model, Version
from serving.observability.drift import DriftMonitor
from serving.observability.metrics import Registry
from serving.protocol.errors import Code, ServingError

log = logging.getLogger("serving.models.manager")  # the name operators see in log lines; kept across the move

_STATE_ENUM = get_model_status_pb2.ModelVersionStatus.State


def release_memory() -> None:
    """Free what an unloaded version leaves: collect its reference cycles, then hand the freed heap back to
    the system (glibc keeps freed memory in its arenas otherwise; elsewhere the trim is skipped)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class ModelManager:
    """Owns every model version; request paths call :meth:`resolve`, the poller calls :meth:`poll`."""

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        *,
        metrics: Registry | None = None,
        poll_seconds: float = 1.0,
        allow_labels_for_unavailable: bool = False,
        enable_warmup: bool = True,
        warmup_iterations: int = 1,
        tags: tuple[str, ...] = ("serve",),
        on_change: Callable[[], None] | None = None,
        prefer_tflite_model: bool = False,
    ) -> None:
        self.metrics = metrics or Registry()
        self.poll_seconds = poll_seconds
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self.enable_warmup = enable_warmup
        self.warmup_iterations = max(warmup_iterations, 1)
        self.tags = tags
        self.on_change = on_change
        self.prefer_tflite_model = prefer_tflite_model  # serve <version>/model.tflite when there is one
        self.models: dict[str, Model] = {}
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.config = model_server_config_pb2.ModelServerConfig()
        self._apply_models(config)
        self.metrics.model_state.set_function(self._state_points)

    # ---- running -----------------------------------------------------------------------------

    def start(self) -> None:
        """Load what is on disk now, check the labels, then keep polling in the background."""
        self.poll()
        with self._lock:
            for model_config in self.config.model_config_list.config:
                self._set_labels(self.models[model_config.name], dict(model_config.version_labels), startup=True)
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # the poller must survive anything a folder throws at it
                log.exception("model polling failed; retrying at the next interval")

    def poll(self) -> None:
        """One pass over every model: load newly aspired versions, then unload replaced ones."""
        with self._poll_lock:
            with self._lock:
                models = [m for m in self.models.values() if not m.removed]
            for model in models:
                self._poll_model(model)

    def _poll_model(self, model: Model) -> None:
        on_disk, model.warned_empty = poll_versions(model.name, model.base_path, warned=model.warned_empty)
        if not on_disk:
            return
        aspired = aspired_versions(model.policy, on_disk)
        for number in sorted(aspired, reverse=True):
            if needs_load(model.versions.get(number), on_disk[number]):
                self._load(model, number, on_disk[number])
        self._unload_replaced(model, aspired)

    def _load(self, model: Model, number: int, path: str) -> None:
        version = Version(model.name, number, path, state=LOADING, fingerprint=fingerprint(path))
        with self._lock:
            model.versions[number] = version
        started = time.perf_counter()
        servable = loader.open_servable(model.name, number, path, self.tags, self.prefer_tflite_model)
        try:
            reference = loader.load(servable, metrics=self.metrics, enable_warmup=self.enable_warmup,
                                    warmup_iterations=self.warmup_iterations, expected_fingerprint=version.fingerprint)
        except ServingError as exc:
            self.metrics.load_attempt_count.inc((path, "fail"))
            with self._lock:
                version.state, version.error = END, exc
                version.fingerprint = fingerprint(path)
            log.error("Loading servable: {name: %s version: %d} failed: %s", model.name, number, exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - whatever a broken SavedModel raises
            self.metrics.load_attempt_count.inc((path, "fail"))
            with self._lock:
                version.state, version.error = END, ServingError(Code.UNKNOWN, f"{type(exc).__name__}: {exc}")
                version.fingerprint = fingerprint(path)
            log.error("Loading servable: {name: %s version: %d} failed: %s", model.name, number, exc)
            return
        elapsed = time.perf_counter() - started
        self.metrics.load_attempt_count.inc((path, "success"))
        self.metrics.load_latency.inc((path,), int(elapsed * 1e6))
        self.metrics.load_seconds.set((model.name, str(number)), round(elapsed, 6))
        drift = DriftMonitor(reference) if reference else None
        with self._lock:
            version.servable, version.load_seconds, version.drift = servable, elapsed, drift
            version.state = AVAILABLE
        if drift is not None:
            self.metrics.track_drift(model.name, str(number), drift)
        log.info("Successfully loaded servable version {name: %s version: %d} in %.3fs", model.name, number, elapsed)
        loader.prepare_in_background(servable)
        self._changed()

    def _unload_replaced(self, model: Model, aspired: set[int]) -> None:
        with self._lock:
            doomed = to_unload(model, aspired)
            for version in doomed:
                version.state = UNLOADING
        for version in doomed:
            self._unload(version)

    def _unload(self, version: Version) -> None:
        # In-flight requests hold their own reference to the servable; dropping ours is enough for it to go
        # once they finish, but a loaded SavedModel is a graph of reference cycles that only a full collection
        # frees, and in a process this size full collections are rare: without one here each replaced version
        # stayed in memory (tens of MiB of TensorFlow functions and variables per version).
        with self._lock:
            version.servable = None
            version.drift = None
            version.state = END
        self.metrics.track_drift(version.model, str(version.number), None)
        release_memory()
        log.info("Unloaded servable version {name: %s version: %d}", version.model, version.number)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # ---- requests ----------------------------------------------------------------------------

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Version:
        """The version a request addresses, with TF Serving's errors for unknown model/version/label."""
        model = self.models.get(name)
        if label is not None:
            number = model.labels.get(label) if model is not None and not model.removed else None
            if number is None:
                raise ServingError(Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")
            version = number
        if version is not None:
            found = model.versions.get(version) if model is not None and not model.removed else None
            if found is None or found.state != AVAILABLE:
                raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})")
            return found
        if model is None or model.removed:
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
        available = model.available()
        if not available:
            raise ServingError(Code.NOT_FOUND, f"Servable not found for request: Latest({name})")
        return available[-1]

    def status(self, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        model = self.models.get(name)
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            versions = list(model.versions.values()) if model is not None else []
        if version is not None:
            versions = [v for v in versions if v.number == version]
            if not versions:
                raise ServingError(Code.NOT_FOUND, f"Could not find version {version} of model {name}")
        elif not versions:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {name}")
        for item in sorted(versions, key=lambda v: v.number, reverse=True):
            entry = response.model_version_status.add(version=item.number, state=_STATE_ENUM.Value(item.state))
            entry.status.SetInParent()
            if item.error is not None:
                entry.status.error_code = item.error.code_number
                entry.status.error_message = item.error.message
        return response

    def labels(self, name: str) -> dict[str, int]:
        model = self.models.get(name)
        return dict(model.labels) if model is not None and not model.removed else {}

    def model_names(self) -> list[str]:
        return [name for name, model in self.models.items() if not model.removed]

    def not_ready(self) -> list[str]:
        """Models with no AVAILABLE version (readiness fails while this is non-empty)."""
        return [m.name for m in self.models.values() if not m.removed and not m.available()]

    # ---- configuration -----------------------------------------------------------------------

    def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Full replacement, as HandleReloadConfigRequest, applied only once it can serve: models it adds (or
        moves to a new base path) are loaded first and must have an AVAILABLE version, and its labels must point
        at available versions; otherwise the error says why and the previous config keeps serving untouched."""
        from serving.config import ConfigError, validate_model_config

        if config.WhichOneof("config") != "model_config_list":
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported",
            )
        try:
            validate_model_config(config)
        except ConfigError as exc:
            raise ServingError(Code.INVALID_ARGUMENT, str(exc)) from None
        staged = self._stage(config)
        with self._lock:
            kept = {m.name: m for m in config.model_config_list.config if m.name not in staged}
            policies = {name: self.models[name].policy for name in kept}
            for name, model_config in kept.items():
                self.models[name].policy = model_config  # a new version policy may load what new labels need
        with self._poll_lock:
            for model in [*staged.values(), *(self.models[name] for name in kept)]:
                self._poll_model(model)
        try:
            with self._lock:
                for model in staged.values():
                    if not model.available():
                        raise ServingError(
                            Code.FAILED_PRECONDITION,
                            f"model {model.name}: no version could be loaded from base_path {model.base_path}; "
                            "the previous model config keeps serving (check the path and its numeric version "
                            "folders)")
                plans = {m.name: dict(m.version_labels) for m in config.model_config_list.config}
                for name, labels in plans.items():
                    self._check_labels(staged.get(name) or self.models[name], labels)
        except ServingError:
            with self._lock:
                for name, policy in policies.items():
                    self.models[name].policy = policy
            for model in staged.values():
                for version in list(model.versions.values()):
                    if version.state == AVAILABLE:
                        self._unload(version)
            raise
        with self._lock:
            self._apply_models(config, staged)
            for name, labels in plans.items():
                self.models[name].labels = labels
        self.poll()
        self._changed()

    def _stage(self, config: model_server_config_pb2.ModelServerConfig) -> dict[str, Model]:
        """The models a new config adds or moves to another base path, not yet visible to requests."""
        with self._lock:
            staged = {}
            for model_config in config.model_config_list.config:
                existing = self.models.get(model_config.name)
                if existing is None or existing.removed or existing.base_path != model_config.base_path:
                    staged[model_config.name] = Model(model_config.name, model_config.base_path, model_config,
                                                      versions={})
            return staged

    def _apply_models(self, config: model_server_config_pb2.ModelServerConfig,
                      staged: dict[str, Model] | None = None) -> None:
        wanted = {m.name: m for m in config.model_config_list.config}
        staged = staged or {}
        for name, model in self.models.items():
            if name not in wanted and not model.removed:
                model.removed = True
                for version in list(model.versions.values()):
                    if version.state == AVAILABLE:
                        self._unload(version)
        for name, model_config in wanted.items():
            existing = self.models.get(name)
            if name in staged:
                replaced = existing.versions.values() if existing is not None and not existing.removed else ()
                for version in [v for v in replaced if v.state == AVAILABLE]:
                    self._unload(version)  # the staged model at its new base path serves from now on
                self.models[name] = staged[name]
            elif existing is None or existing.removed or existing.base_path != model_config.base_path:
                self.models[name] = Model(name, model_config.base_path, model_config,
                                          versions=existing.versions if existing else {})
            else:
                existing.policy = model_config
        self.config = model_server_config_pb2.ModelServerConfig()
        self.config.CopyFrom(config)

    def _check_labels(self, model: Model, labels: dict[str, int]) -> None:
        for label, number in labels.items():
            current = model.versions.get(number)
            if current is not None and current.state == AVAILABLE:
                continue
            if self.allow_labels_for_unavailable and model.labels.get(label, number) == number:
                continue
            raise ServingError(
                Code.FAILED_PRECONDITION,
                f"Request to assign label to version {number} of model {model.name}, "
                f"which is not currently available for inference",
            )

    def _set_labels(self, model: Model, labels: dict[str, int], startup: bool = False) -> None:
        self._check_labels(model, labels)
        model.labels = labels

    def _state_points(self) -> list[tuple[tuple[str, ...], float]]:
        with self._lock:
            return [
                ((m.name, str(v.number)), 1.0 if v.state == AVAILABLE else 0.0)
                for m in self.models.values() for v in m.versions.values()
            ]

    def version_path(self, name: str, number: int) -> Path | None:
        model = self.models.get(name)
        version = model.versions.get(number) if model else None
        return Path(version.path) if version else None
