"""Bring back the data version a model names: ``dvc checkout`` of a recorded DVC hash.

A model version names its data by the DVC hash of the input folder (on the Examples artifact, in the
MLflow run's ``data.dvc_md5`` and the LGPD report). In a Git repository the way back is
``git checkout <commit> -- <folder>.dvc && dvc checkout``; with only the hash at hand (from the report),
this points the folder's ``.dvc`` file at it and runs ``dvc checkout`` (``dvc pull`` when the local cache
lacks it), then checks the bytes on disk are that version. DVC runs from .venv-airflow, where it lives.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from errors import EsteiraError
from privacy.data_version import DataVersion, DataVersionError, read_data_version

DVC = Path(__file__).resolve().parent.parent / ".venv-airflow" / "bin" / "dvc"


class DataCheckoutError(EsteiraError, RuntimeError):
    """The recorded data version could not be restored; the message says why and what to do."""


def _dvc(binary: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def checkout_data_version(folder: str | Path, md5: str, dvc: Path = DVC) -> DataVersion:
    """Restore ``folder`` (tracked by ``<folder>.dvc``) to the DVC version ``md5``; the version now on disk."""
    folder = Path(folder).resolve()
    dvc_file = folder.parent / f"{folder.name}.dvc"
    if not dvc.exists():
        raise DataCheckoutError(f"{dvc} not found; build the environment DVC lives in with `make airflow-install`")
    if not dvc_file.is_file():
        raise DataCheckoutError(f"{dvc_file} not found: {folder} is not tracked by `dvc add`; only a folder DVC "
                                "tracks can be checked out at a recorded version")
    document = yaml.safe_load(dvc_file.read_text()) or {}
    outs = [out for out in document.get("outs", []) if isinstance(out, dict) and out.get("path") == folder.name]
    if len(outs) != 1:
        raise DataVersionError(f"{dvc_file} records no out named {folder.name}; re-create it with `dvc add {folder}`")
    if outs[0].get("md5") != md5:
        # size and nfiles describe the old version; DVC reads the new one's from its .dir object
        outs[0].update({"md5": md5, "hash": "md5"})
        for stale in ("size", "nfiles"):
            outs[0].pop(stale, None)
        dvc_file.write_text(yaml.safe_dump(document, sort_keys=False))
    result = _dvc(dvc, dvc_file.parent, "checkout", "--force", dvc_file.name)
    if result.returncode != 0:  # not in the local cache: fetch it from the default remote
        result = _dvc(dvc, dvc_file.parent, "pull", "--force", dvc_file.name)
    if result.returncode != 0:
        raise DataCheckoutError(f"dvc could not restore {folder} to {md5} ({result.returncode}): "
                                f"{(result.stdout + result.stderr).strip()[-1500:]}; check the hash is one "
                                "`dvc add` recorded and that the remote holding it is the default (`dvc remote list`)")
    version = read_data_version(folder)
    if version is None or not version.matches or version.recorded_md5 != md5:
        raise DataCheckoutError(f"after dvc checkout, {folder} does not hold version {md5} "
                                f"(on disk: {version.current_md5 if version else 'untracked'})")
    return version
