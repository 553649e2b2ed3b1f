"""A model and its versions, as the status API reports them (TF Serving's ServableState)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tensorflow_serving.config import model_server_config_pb2

from serving.observability.drift import DriftMonitor
from serving.protocol.errors import ServingError
from serving.servables.saved_model import SavedModelServable

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


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
