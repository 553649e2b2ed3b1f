"""Podman as these machines need it: the runc runtime and ulimits the sandbox allows.

The settings go in a generated containers.conf named by ``CONTAINERS_CONF`` (nothing in /etc is
edited): crun refuses hybrid cgroups, and Podman's default ulimits exceed the sandbox's hard limits.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from errors import EsteiraError


class PodmanError(EsteiraError, RuntimeError):
    """Podman is missing or a podman command failed; the message says which and how to fix it."""


def _limit(kind: int) -> int | None:
    hard = resource.getrlimit(kind)[1]
    return None if hard == resource.RLIM_INFINITY else hard


# runc could not set the host's hard process limit (96362 here) in a container; 4096 is ample for
# one server or pipeline run and is accepted.
NPROC = 4096


def containers_conf() -> str:
    """runc; open files at this process's hard limit (soft = hard), processes at NPROC or less."""
    nofile, nproc = _limit(resource.RLIMIT_NOFILE), _limit(resource.RLIMIT_NPROC)
    limits = {"nofile": nofile, "nproc": NPROC if nproc is None else min(nproc, NPROC)}
    ulimits = [f'"{name}={value}:{value}"' for name, value in limits.items() if value is not None]
    return ('[engine]\nruntime = "runc"\n'
            f"[containers]\ndefault_ulimits = [{', '.join(ulimits)}]\n")


@dataclass(frozen=True)
class Podman:
    """Runs ``podman`` with the generated containers.conf kept in ``state_dir``."""

    state_dir: Path

    def __post_init__(self) -> None:
        if shutil.which("podman") is None:
            raise PodmanError("podman is not installed; install it with `apt-get install podman buildah runc "
                              "catatonit mmdebstrap uidmap slirp4netns fuse-overlayfs` (as .ci/run does)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "containers.conf").write_text(containers_conf())

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, CONTAINERS_CONF=str(self.state_dir / "containers.conf"))

    def run(self, *args: str, capture: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``podman *args``; a failure raises PodmanError with podman's own last lines."""
        result = subprocess.run(["podman", *args], env=self.env, capture_output=capture, text=True)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()[-5:] if capture else []
            raise PodmanError(f"`podman {' '.join(args)}` exited {result.returncode}"
                              + (":\n" + "\n".join(detail) if detail else ""))
        return result

    def image_exists(self, tag: str) -> bool:
        return self.run("image", "exists", tag, check=False).returncode == 0

    def image_size(self, tag: str) -> int:
        """Bytes of the image's layers as Podman stores them (uncompressed)."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())

    def published_port(self, container_id: str, port: int) -> int:
        """The host port that ``podman run --publish 127.0.0.1::PORT`` picked for the container's PORT."""
        return int(self.run("port", container_id, f"{port}/tcp").stdout.strip().rsplit(":", 1)[1])

    def container_exists(self, container_id: str) -> bool:
        return self.run("container", "exists", container_id, check=False).returncode == 0

    def logs(self, container_id: str, tail: int = 30) -> str:
        result = self.run("logs", "--tail", str(tail), container_id, check=False)
        return (result.stdout + result.stderr).strip()

    def remove_container(self, container_id: str) -> None:
        """Stop and remove the container with its anonymous volumes (an image's VOLUME makes one per run)."""
        self.run("rm", "--force", "--volumes", "--time", "5", container_id, check=False)
