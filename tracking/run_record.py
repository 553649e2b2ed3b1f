"""What one pipeline run tells MLflow, as plain data: the adapter fills it, the logger writes it."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

KEY_PACKAGES = ("esteira", "tfx", "tensorflow", "tensorflow-transform", "tensorflow-model-analysis",
                "apache-beam", "mlflow")
_NAME_UNSAFE = re.compile(r"[^\w.\-/ ]")


@dataclass(frozen=True)
class Registration:
    """A pushed serving version to register under ``model_name``."""

    model_name: str
    serving_version: str
    saved_model_dir: Path


@dataclass
class PipelineRunRecord:
    """One pipeline run; ``run_key`` names what it evaluated, so a cached rerun maps to the same run."""

    run_key: str
    run_name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metric_history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    json_artifacts: dict[str, Any] = field(default_factory=dict)
    registration: Registration | None = None


def metric_name(*parts: str) -> str:
    """A name MLflow accepts (letters, digits, _ - . / and spaces), e.g. slice values with '='."""
    return ".".join(_NAME_UNSAFE.sub("_", part) for part in parts if part)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → {'training.dp.enabled': 'False', 'model.hidden_units': '[32, 16]'}."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return flat


def config_sha256(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the config: equal configs, equal hashes."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(folder: Path) -> str | None:
    """HEAD of the repository containing ``folder``, or None outside a repository."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
