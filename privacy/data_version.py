"""The DVC version of an input folder or file: the content hash its ``.dvc`` file (``dvc add``) or a
``dvc.lock`` stage (``dvc repro``) records, checked against the bytes on disk, so a model version names the
exact data version (``dvc checkout`` brings it back).

DVC 3 hashes a file as the MD5 of its bytes and a folder as the MD5 of the JSON list of its files
(``[{"md5": ..., "relpath": ...}]``, sorted by the relpath string, keys sorted) followed by ``.dir``. The
hash is computed here from the same bytes (no DVC import: the pipeline's environment does not need DVC)
and compared with the recorded one: data changed after ``dvc add`` never passes as the recorded version.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from errors import EsteiraError

_CHUNK = 1 << 20
DIR_SUFFIX = ".dir"


class DataVersionError(EsteiraError, ValueError):
    """A .dvc file that cannot be read as DVC writes it; the message names the file and the fix."""


@dataclass(frozen=True)
class DataVersion:
    """What DVC recorded for ``path`` and whether the working copy still holds exactly that."""

    path: str            # the tracked folder or file
    dvc_file: str        # its .dvc file
    recorded_md5: str    # the hash in the .dvc file (a folder's ends in '.dir')
    current_md5: str     # the same hash over the bytes on disk now

    @property
    def matches(self) -> bool:
        return self.recorded_md5 == self.current_md5

    def as_properties(self) -> dict[str, str]:
        """Flat string properties (MLMD custom properties, MLflow params)."""
        return {"dvc_md5": self.recorded_md5, "dvc_path": self.path, "dvc_file": self.dvc_file,
                "dvc_matches_working_copy": str(self.matches).lower()}


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def md5_dir(path: Path) -> str:
    """DVC 3's folder hash: MD5 of the sorted JSON listing of (relpath, md5) of every file, plus '.dir'."""
    entries = sorted(({"md5": md5_file(file), "relpath": file.relative_to(path).as_posix()}
                      for file in path.rglob("*") if file.is_file()), key=lambda entry: entry["relpath"])
    listing = json.dumps(entries, sort_keys=True).encode()
    return hashlib.md5(listing, usedforsecurity=False).hexdigest() + DIR_SUFFIX


def _recorded_out(path: Path) -> tuple[Path, dict] | None:
    """The DVC record of ``path``: ``<path>.dvc`` (``dvc add``), else the out of a stage in the nearest
    ``dvc.lock`` above it (``dvc repro``), with the file it came from."""
    candidates: list[Path] = [path.parent / f"{path.name}.dvc"]
    candidates += [folder / "dvc.lock" for folder in path.parents]
    for dvc_file in candidates:
        if not dvc_file.is_file():
            continue
        try:
            document = yaml.safe_load(dvc_file.read_text()) or {}
            if dvc_file.name == "dvc.lock":
                outs = [out for stage in document.get("stages", {}).values() for out in stage.get("outs", [])]
                wanted = path.relative_to(dvc_file.parent).as_posix()
            else:
                outs, wanted = document["outs"], path.name
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
            raise DataVersionError(f"{dvc_file} is not a DVC file DVC 3 writes ({error!r}); "
                                   f"re-create it with `dvc add {path}` or `dvc repro`") from None
        out = next((out for out in outs if isinstance(out, dict) and out.get("path") == wanted), None)
        if out is not None:
            return dvc_file, out
    return None


def read_data_version(path: str | Path) -> DataVersion | None:
    """The DVC version of ``path``, or None when neither a ``.dvc`` file nor a ``dvc.lock`` records it."""
    path = Path(path).resolve()
    found = _recorded_out(path)
    if found is None:
        return None
    dvc_file, out = found
    if out.get("hash") != "md5" or "md5" not in out:  # DVC 2 wrote no 'hash' key and hashed text after dos2unix
        raise DataVersionError(f"{dvc_file}: the record of {path.name} has no DVC 3 md5 hash; "
                               f"re-add the data with DVC 3 (`dvc add {path}` or `dvc repro`)")
    recorded = str(out["md5"])
    current = md5_dir(path) if recorded.endswith(DIR_SUFFIX) else md5_file(path)
    return DataVersion(str(path), str(dvc_file), recorded, current)


class _PropertyHolder(Protocol):
    def set_string_custom_property(self, key: str, value: str) -> None: ...


def record_data_version(artifact: _PropertyHolder, input_base: str) -> DataVersion | None:
    """Put the DVC version of ``input_base`` on an artifact (an ExampleGen's Examples) as string properties
    dvc_md5, dvc_path, dvc_file, dvc_matches_working_copy; nothing when the data is not under DVC."""
    if "://" in input_base:  # a bucket: DVC's record lives beside a local checkout, not here
        return None
    version = read_data_version(input_base)
    for key, value in (version.as_properties() if version else {}).items():
        artifact.set_string_custom_property(key, value)
    return version
