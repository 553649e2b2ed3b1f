"""Where inference runs: in this process (the manager's servables, dynamically batched) or on a TF Serving behind us
(gRPC)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.protocol.input_spec import InputSpec

if TYPE_CHECKING:
    from serving.observability.drift import DriftMonitor
    from serving.servables.model_facts import ModelFacts
    from serving.servables.saved_model import SavedModelServable
    from serving.servables.signature import Signature


class LocalPin(NamedTuple):
    """What an in-process handle holds on to, taken at resolve time: a version unloaded while the request
    is in flight (a swap under load) stays usable until the request is done, as TF Serving's handles do."""

    servable: SavedModelServable
    drift: DriftMonitor | None
    signatures: Mapping[str, Signature]
    model: Any  # the loaded TF object, kept alive with the signatures that run in it


@dataclass
class Handle:
    """A resolved model version: what a request is served by, and the signatures it offers."""

    model: str
    version: int
    signatures: Mapping[str, meta_graph_pb2.SignatureDef]
    requested_version: int | None = None
    requested_label: str | None = None
    local: LocalPin | None = field(default=None, repr=False)
    facts: ModelFacts | None = field(default=None, repr=False)  # a remote version's, when the gateway can read them
    _input_specs: dict[str, InputSpec] = field(default_factory=dict, repr=False)

    def input_spec(self, signature: str) -> InputSpec:
        """The inputs of ``signature`` (a key of :attr:`signatures`) as the request decoders take them: the
        servable's own spec in this process, else read once per handle from the SignatureDef."""
        if self.local is not None:
            return self.local.signatures[signature].input_spec
        spec = self._input_specs.get(signature)
        if spec is None:
            spec = self._input_specs[signature] = InputSpec.of(self.signatures[signature])
        return spec


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
