"""Where versions come from: numeric folders under a model's base path (TF Serving's FileSystemStoragePathSource)."""
from __future__ import annotations

import logging
import os

log = logging.getLogger("serving.models.manager")  # the name operators see in log lines; kept from before the move


def versions_on_disk(base_path: str) -> dict[int, str]:
    """Numeric child folders (``00000123`` is 123); anything else is ignored, as TF Serving does."""
    found: dict[int, str] = {}
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir():
            found.setdefault(int(entry.name), entry.path)
    return found


def fingerprint(path: str) -> tuple:
    """What changes when a folder's content changes: names, sizes and modification times."""
    items = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            items.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(items))


def poll_versions(name: str, base_path: str, *, warned: bool) -> tuple[dict[int, str], bool]:
    """The version folders of model ``name`` now, and whether an empty or missing base path has been
    warned of: TF Serving's warnings, once until versions appear."""
    if not os.path.isdir(base_path):
        if not warned:
            log.warning("Could not find base path %s for servable %s", base_path, name)
        return {}, True
    on_disk = versions_on_disk(base_path)
    if not on_disk:
        if not warned:
            log.warning(
                "No versions of servable %s found under base path %s. Did you forget to name your leaf "
                "directory as a number (eg. '/1/')?", name, base_path)
        return {}, True
    return on_disk, False
