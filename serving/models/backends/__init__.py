"""Where inference runs: in this process (SavedModel) or on a TF Serving behind us (gRPC)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2


@dataclass
class Handle:
    """A resolved model version: what a request is served by, and the signatures it offers."""

    model: str
    version: int
    signatures: Mapping[str, meta_graph_pb2.SignatureDef]
    requested_version: int | None = None
    requested_label: str | None = None
    local: Any = field(default=None, repr=False)


class Backend(Protocol):
    async def resolve(self, name: str, version: int | None, label: str | None) -> Handle: ...

    async def predict(self, handle: Handle, signature: str, inputs: Mapping[str, np.ndarray],
                      output_filter: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], int]: ...

    async def classify(self, handle: Handle, signature: str, examples: Sequence[bytes]) -> tuple[list, int]: ...

    async def regress(self, handle: Handle, signature: str, examples: Sequence[bytes]) -> tuple[list[float], int]: ...

    async def status(self, name: str, version: int | None) -> get_model_status_pb2.GetModelStatusResponse: ...

    async def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None: ...

    def labels(self, name: str) -> dict[str, int]: ...

    def model_names(self) -> list[str]: ...

    def not_ready(self) -> list[str]: ...

    def close(self) -> None: ...
