"""Esteira's images, built here with Podman on a locally made Debian base.

Production builds name a public base (``ARG BASE_IMAGE`` in docker/*.Dockerfile); these machines
reach no image registry, so the base is made with mmdebstrap from Debian's own packages: Debian 12
with Python 3.11, what ``python:3.11-slim-bookworm`` holds.

    esteira images base              # localhost/debian-python:3.11-bookworm
    esteira images build serving     # wheelhouse + localhost/esteira-serving:dev
    esteira images build pipeline    # wheelhouse + localhost/esteira-pipeline:dev
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from deploy.podman import Podman, PodmanError

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "localhost/debian-python:3.11-bookworm"
# The interpreter only: uv (mounted from the wheelhouse at build time) makes the venv, so no pip.
BASE_PACKAGES = ("python3.11",)
DEBIAN_MIRROR = os.environ.get("ESTEIRA_DEBIAN_MIRROR", "http://deb.debian.org/debian")
IMAGES = {"serving": "localhost/esteira-serving:dev", "pipeline": "localhost/esteira-pipeline:dev"}
DEFAULT_STATE = ROOT / "build" / "podman"


def make_base_image(podman: Podman, tag: str = BASE_IMAGE) -> str:
    """Make a minimal Debian 12 with Python 3.11 from Debian's packages and import it as ``tag`` (once).

    mmdebstrap (debootstrap with apt's dependency resolution) writes the tree as a tarball that
    ``podman import`` reads from the pipe: no temporary root filesystem on disk.
    """
    if podman.image_exists(tag):
        return tag
    if shutil.which("mmdebstrap") is None:
        raise PodmanError("mmdebstrap is not installed; `apt-get install mmdebstrap` (as .ci/run does)")
    with tempfile.TemporaryFile() as log:
        bootstrap = subprocess.Popen(["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                                      "--format=tar", "bookworm", "-", DEBIAN_MIRROR],
                                     stdout=subprocess.PIPE, stderr=log)
        imported = subprocess.run(["podman", "import", "--quiet", "-", tag], stdin=bootstrap.stdout,
                                  env=podman.env, capture_output=True, text=True)
        assert bootstrap.stdout is not None  # stdout=PIPE
        bootstrap.stdout.close()
        if bootstrap.wait() != 0:
            log.seek(0)
            podman.run("rmi", "--force", tag, check=False)
            raise PodmanError(f"mmdebstrap of Debian bookworm from {DEBIAN_MIRROR} failed (set ESTEIRA_DEBIAN_MIRROR "
                              f"to a reachable mirror):\n{log.read().decode(errors='replace')[-2000:]}")
        if imported.returncode != 0:
            raise PodmanError(f"podman import of the base image failed: {imported.stderr.strip()}")
    return tag


def build_image(podman: Podman, image: str, *, base: str = BASE_IMAGE, tag: str | None = None,
                quiet: bool = True) -> str:
    """``podman build`` docker/<image>.Dockerfile on ``base``; the wheelhouse must exist already.

    Docker format: the OCI format has no HEALTHCHECK.
    """
    tag = tag or IMAGES[image]
    podman.run("build", "--format", "docker", "--build-arg", f"BASE_IMAGE={base}", "--tag", tag,
               "--file", str(ROOT / "docker" / f"{image}.Dockerfile"), *(["--quiet"] if quiet else []),
               str(ROOT), capture=quiet)
    return tag
