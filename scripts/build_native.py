"""Compile the native HTTP transport (serving/_native_http.c) for the Python running this script.

Called by `make install`; plain gcc with the interpreter's own include directory and extension suffix,
so no build system is involved. Rebuilds only when the source is newer than the module.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "serving" / "_native_http.c"
FLAGS = ["-O2", "-fPIC", "-shared", "-pthread", "-Wall", "-Wextra", "-Wno-unused-parameter",
         "-Wno-missing-field-initializers"]


def target() -> Path:
    return SOURCE.with_name("_native_http" + sysconfig.get_config_var("EXT_SUFFIX"))


def main() -> int:
    out = target()
    if out.exists() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return 0
    compiler = shutil.which("gcc") or shutil.which("cc")
    include = Path(sysconfig.get_paths()["include"])
    if compiler is None:
        print("build_native: no C compiler; install one: apt-get install gcc", file=sys.stderr)
        return 1
    if not (include / "Python.h").exists():
        print(f"build_native: {include}/Python.h is missing; install the headers: apt-get install python3.11-dev",
              file=sys.stderr)
        return 1
    partial = out.with_suffix(".partial")
    result = subprocess.run([compiler, *FLAGS, f"-I{include}", str(SOURCE), "-o", str(partial)])
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        print(f"build_native: compiling {SOURCE.name} failed (see above)", file=sys.stderr)
        return 1
    partial.replace(out)
    print(f"build_native: built {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
