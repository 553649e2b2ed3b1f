"""Model lifecycle: find numeric version folders, load and warm up aspired versions, serve, unload.

Mirrors TF Serving's FileSystemStoragePathSource + AvailabilityPreservingPolicy: a new version is
loaded (and warmed up) before an old one is unloaded, the last available version is never
unloaded, and a version that fails to load is reported (state END with its error) while the other
versions keep serving. A failed version is retried when its folder's content changes, so a
half-written export that is later completed loads without a restart.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.observability.drift import DriftMonitor, ReferenceFormatError, read_reference
from serving.protocol.errors import CODE_NUMBER, ServingError
from serving.observability.metrics import Registry
from serving.models.backends.tflite import TfLiteServable, has_tflite_model
from serving.models.servable import SavedModelServable
from serving.models.warmup import warm_up

log = logging.getLogger("serving.models.manager")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
_STATE_ENUM = get_model_status_pb2.ModelVersionStatus.State


@dataclass
class Version:
    """One version of one model, as the status API reports it."""

    model: str
    number: int
    path: str
    state: str = START
    error: ServingError | None = None
    servable: SavedModelServable | None = None
    fingerprint: tuple = ()
    load_seconds: float = 0.0
    drift: DriftMonitor | None = None


@dataclass
class Model:
    name: str
    base_path: str
    policy: model_server_config_pb2.ModelConfig
    labels: dict[str, int] = field(default_factory=dict)
    versions: dict[int, Version] = field(default_factory=dict)
    removed: bool = False
    warned_empty: bool = False

    def available(self) -> list[Version]:
        return sorted((v for v in self.versions.values() if v.state == AVAILABLE), key=lambda v: v.number)


def versions_on_disk(base_path: str) -> dict[int, str]:
    """Numeric child folders (``00000123`` is 123); anything else is ignored, as TF Serving does."""
    found: dict[int, str] = {}
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir():
            found.setdefault(int(entry.name), entry.path)
    return found


def fingerprint(path: str) -> tuple:
    """What changes when a folder's content changes: names, sizes and modification times."""
    items = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            items.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(items))


def aspired_versions(config: model_server_config_pb2.ModelConfig, on_disk: Iterable[int]) -> set[int]:
    policy = config.model_version_policy
    numbers = sorted(on_disk, reverse=True)
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(numbers)
    if choice == "specific":
        return {v for v in policy.specific.versions if v in set(numbers)}
    count = policy.latest.num_versions if choice == "latest" else 1
    return set(numbers[: max(count, 1)])


def open_servable(name: str, number: int, path: str, tags: tuple[str, ...],
                  prefer_tflite_model: bool) -> SavedModelServable:
    """TF Serving's choice: the version's model.tflite when preferred and present, else its SavedModel."""
    if prefer_tflite_model and has_tflite_model(path):
        return TfLiteServable(name, number, path, tags)
    return SavedModelServable(name, number, path, tags)


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
            except Exception:  # noqa: BLE001 - the poller must survive anything a folder throws at it
                log.exception("model polling failed; retrying at the next interval")

    def poll(self) -> None:
        """One pass over every model: load newly aspired versions, then unload replaced ones."""
        with self._poll_lock:
            with self._lock:
                models = [m for m in self.models.values() if not m.removed]
            for model in models:
                self._poll_model(model)

    def _poll_model(self, model: Model) -> None:
        if not os.path.isdir(model.base_path):
            if not model.warned_empty:
                log.warning("Could not find base path %s for servable %s", model.base_path, model.name)
                model.warned_empty = True
            return
        on_disk = versions_on_disk(model.base_path)
        if not on_disk:
            if not model.warned_empty:
                log.warning(
                    "No versions of servable %s found under base path %s. Did you forget to name your leaf "
                    "directory as a number (eg. '/1/')?", model.name, model.base_path)
                model.warned_empty = True
            return
        model.warned_empty = False
        aspired = aspired_versions(model.policy, on_disk)
        for number in sorted(aspired, reverse=True):
            current = model.versions.get(number)
            if current is not None and current.state in (AVAILABLE, LOADING):
                continue
            if current is not None and current.state == END:
                if current.error is None and current.servable is None and current.fingerprint == fingerprint(on_disk[number]):
                    pass  # unloaded earlier and aspired again: load again below
                elif current.error is not None and current.fingerprint == fingerprint(on_disk[number]):
                    continue  # failed before and nothing changed since: keep reporting the error
            self._load(model, number, on_disk[number])
        self._unload_replaced(model, aspired)

    def _load(self, model: Model, number: int, path: str) -> None:
        version = Version(model.name, number, path, state=LOADING, fingerprint=fingerprint(path))
        with self._lock:
            model.versions[number] = version
        started = time.perf_counter()
        servable = open_servable(model.name, number, path, self.tags, self.prefer_tflite_model)
        try:
            servable.load(prepare=False)
            if self.enable_warmup:
                warm_up(servable, self.metrics, self.warmup_iterations)
            if fingerprint(path) != version.fingerprint:
                raise ServingError("ABORTED", f"version folder {path} changed while it was loading; it will be retried")
            try:
                reference = read_reference(path)
            except ReferenceFormatError as exc:
                log.warning("drift metrics off for %s version %d: %s", model.name, number, exc)
                reference = None
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
                version.state, version.error = END, ServingError("UNKNOWN", f"{type(exc).__name__}: {exc}")
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
        # The version serves now (through the public signature call); the faster entry points are checked
        # and switched on in the background, off the path to AVAILABLE.
        threading.Thread(target=self._prepare, args=(servable,), name="model-prepare", daemon=True).start()
        self._changed()

    @staticmethod
    def _prepare(servable: SavedModelServable) -> None:
        try:
            servable.prepare()
        except Exception:  # noqa: BLE001 - the public call keeps serving
            log.exception("could not prepare the fast call paths of %s version %d", servable.name, servable.version)

    def _unload_replaced(self, model: Model, aspired: set[int]) -> None:
        with self._lock:
            settled = all(
                model.versions.get(v) is not None and model.versions[v].state in (AVAILABLE, END) for v in aspired
            )
            serving_aspired = [v for v in aspired if model.versions.get(v) and model.versions[v].state == AVAILABLE]
            if not settled or not serving_aspired:
                return  # availability first: keep old versions until a new one serves
            doomed = [v for v in model.versions.values() if v.state == AVAILABLE and v.number not in aspired]
            for version in doomed:
                version.state = UNLOADING
        for version in doomed:
            self._unload(version)

    def _unload(self, version: Version) -> None:
        # In-flight requests hold their own reference to the servable; dropping ours is enough.
        with self._lock:
            version.servable = None
            version.drift = None
            version.state = END
        self.metrics.track_drift(version.model, str(version.number), None)
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
                raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            version = number
        if version is not None:
            found = model.versions.get(version) if model is not None and not model.removed else None
            if found is None or found.state != AVAILABLE:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
            return found
        if model is None or model.removed:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        available = model.available()
        if not available:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        return available[-1]

    def status(self, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        model = self.models.get(name)
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            versions = list(model.versions.values()) if model is not None else []
        if version is not None:
            versions = [v for v in versions if v.number == version]
            if not versions:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
        elif not versions:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        for item in sorted(versions, key=lambda v: v.number, reverse=True):
            entry = response.model_version_status.add(version=item.number, state=_STATE_ENUM.Value(item.state))
            entry.status.SetInParent()
            if item.error is not None:
                entry.status.error_code = CODE_NUMBER.get(item.error.code, 2)
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
        """Full replacement, as HandleReloadConfigRequest: waits for added models, then moves labels."""
        from serving.config import ConfigError, validate_model_config

        if config.WhichOneof("config") != "model_config_list":
            raise ServingError(
                "INVALID_ARGUMENT",
                "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported",
            )
        try:
            validate_model_config(config)
        except ConfigError as exc:
            raise ServingError("INVALID_ARGUMENT", str(exc)) from None
        with self._lock:
            self._apply_models(config)
        self.poll()
        with self._lock:
            plans = {m.name: dict(m.version_labels) for m in config.model_config_list.config}
            for name, labels in plans.items():
                self._check_labels(self.models[name], labels)
            for name, labels in plans.items():
                self.models[name].labels = labels
        self._changed()

    def _apply_models(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        wanted = {m.name: m for m in config.model_config_list.config}
        for name, model in self.models.items():
            if name not in wanted and not model.removed:
                model.removed = True
                for version in list(model.versions.values()):
                    if version.state == AVAILABLE:
                        self._unload(version)
        for name, model_config in wanted.items():
            existing = self.models.get(name)
            if existing is None or existing.removed or existing.base_path != model_config.base_path:
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
                "FAILED_PRECONDITION",
                f"Request to assign label to version {number} of model {model.name}, which is not currently available for inference",
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
