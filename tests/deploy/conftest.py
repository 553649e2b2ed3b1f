"""Images built once per test session with Podman on a locally made Debian base.

``serving_image`` yields the serving image's name; any test that runs Esteira's server in a
container (compose, ``podman kube play``) takes it from here, so the image is built once a run.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import pytest

from deploy import wheelhouse
from deploy.images import IMAGES, build_image, make_base_image
from deploy.podman import Podman
from serving.demo_model import export_demo_model


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def serving_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """localhost/esteira-serving:dev built from this tree (layers cached between runs)."""
    # Test workers (pytest-xdist) share one image store: the first builds, the others wait and reuse its layers.
    with open(tmp_path_factory.getbasetemp().parent / "esteira-serving-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # The base image (mmdebstrap) and the wheels (the package index) come from two servers: fetch both at once.
        with ThreadPoolExecutor(2) as pool:
            base = pool.submit(make_base_image, podman)
            wheels = pool.submit(wheelhouse.build, wheelhouse.serving())
            base.result(), wheels.result()
        return build_image(podman, "serving", tag=IMAGES["serving"])


@pytest.fixture(scope="session")
def pushed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<store>/demo/{1,2}`` as the Pusher lays it out (the folder's name is the model's); readable by
    the image's non-root user."""
    model = tmp_path_factory.mktemp("models") / "demo"
    export_demo_model(model, 1)
    export_demo_model(model, 2, bias=1.5)
    model.chmod(0o755)
    return model


def _available(rest_url: str, model: str) -> bool:
    try:
        status = httpx.get(f"{rest_url}/v1/models/{model}", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    return any(v.get("state") == "AVAILABLE" for v in status.get("model_version_status", []))


@pytest.fixture(scope="session")
def wait_available(podman: Podman) -> Callable[[str, str, str], None]:
    """Poll TF Serving's model status until a version is AVAILABLE; fail with the container's logs
    if it exits or the deadline passes."""
    def wait(rest_url: str, model: str, container: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _available(rest_url, model):
                return
            if podman.run("inspect", "--format", "{{.State.Running}}", container).stdout.strip() != "true":
                pytest.fail(f"the serving container exited:\n{podman.logs(container)}")
            time.sleep(0.5)
        pytest.fail(f"no version of {model} AVAILABLE after {timeout:.0f} s:\n{podman.logs(container)}")
    return wait
