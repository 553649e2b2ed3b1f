"""The overlays rendered once per session by kubectl kustomize (as `make k8s-render` does)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deploy.manifests import OVERLAYS, Manifest, render

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def make(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """A make target as the workflows run it; `-o install` because the session's .venv is installed."""
    return subprocess.run(["make", "--no-print-directory", "-s", "-o", "install", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
