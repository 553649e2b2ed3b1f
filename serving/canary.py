"""Weighted routing by version label for requests that name no version (e.g. 90/10 stable/canary).

Config (``--canary_config_file``, JSON)::

    {"models": {"fraud": {"stable": 90, "canary": 10}}}

A request with a client id (``X-Client-Id`` header, gRPC ``x-client-id`` metadata or
``PredictRequest.client_id``) always lands on the same label for a given split; others are split at
random. Labels the model does not define are skipped; with none left the latest version serves.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from serving.config import ConfigError


@dataclass(frozen=True)
class Split:
    weights: tuple[tuple[str, float], ...]

    def choose(self, available: set[str], client_id: bytes | str | None = None) -> str | None:
        candidates = [(label, weight) for label, weight in self.weights if label in available and weight > 0]
        total = sum(weight for _, weight in candidates)
        if not candidates or total <= 0:
            return None
        if client_id:
            raw = client_id.encode() if isinstance(client_id, str) else client_id
            point = int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") / 2**64 * total
        else:
            point = random.random() * total
        for label, weight in candidates:
            if point < weight:
                return label
            point -= weight
        return candidates[-1][0]


class CanaryRouter:
    def __init__(self, splits: dict[str, Split] | None = None) -> None:
        self.splits = splits or {}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None) -> CanaryRouter:
        if not path:
            return cls()
        try:
            document = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read canary config {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"canary config {path} is not valid JSON: {exc}") from None
        return cls.from_dict(document, str(path))

    @classmethod
    def from_dict(cls, document: object, source: str = "canary config") -> CanaryRouter:
        models = document.get("models") if isinstance(document, dict) else None
        if not isinstance(models, dict):
            raise ConfigError(f'{source}: expected {{"models": {{"<model>": {{"<label>": <weight>, ...}}}}}}')
        splits = {}
        for model, weights in models.items():
            if not isinstance(weights, dict) or not weights:
                raise ConfigError(f"{source}: model {model!r} needs an object of label to weight")
            for label, weight in weights.items():
                if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                    raise ConfigError(f"{source}: weight of {model}/{label} must be a number >= 0 (got {weight!r})")
            splits[model] = Split(tuple((label, float(weight)) for label, weight in weights.items()))
        return cls(splits)

    def route(self, model: str, labels: set[str], client_id: bytes | str | None = None) -> str | None:
        split = self.splits.get(model)
        return split.choose(labels, client_id) if split else None
