"""Compile the native modules (serving/_native_http.c, _native_grpc.c, _native_codec.c) for this Python.

Called by `make install`; plain gcc with the interpreter's own include directory and extension suffix,
so no build system is involved. A module is rebuilt only when its source or the shared header is newer.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVING = ROOT / "serving"
SHARED = SERVING / "_native_io.h"
# module name -> (libraries to link, the Debian packages that provide their headers)
MODULES = {"_native_http": ([], []), "_native_grpc": (["nghttp2"], ["libnghttp2-dev"]), "_native_codec": ([], [])}
FLAGS = ["-O2", "-fno-strict-aliasing", "-fPIC", "-shared", "-pthread", "-Wall", "-Wextra", "-Wno-unused-parameter",
         "-Wno-missing-field-initializers", "-Werror=implicit-function-declaration"]


def target(name: str) -> Path:
    return SERVING / (name + sysconfig.get_config_var("EXT_SUFFIX"))


def build(name: str, compiler: str, include: Path) -> bool:
    source, out = SERVING / f"{name}.c", target(name)
    if out.exists() and out.stat().st_mtime >= max(source.stat().st_mtime, SHARED.stat().st_mtime):
        return True
    libraries, packages = MODULES[name]
    partial = out.with_suffix(".partial")
    result = subprocess.run([compiler, *FLAGS, f"-I{include}", str(source), "-o", str(partial),
                             *(f"-l{lib}" for lib in libraries)])
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        hint = f"; its headers come from: apt-get install {' '.join(packages)}" if packages else ""
        print(f"build_native: compiling {source.name} failed (see above){hint}", file=sys.stderr)
        return False
    partial.replace(out)
    print(f"build_native: built {out.relative_to(ROOT)}")
    return True


def main() -> int:
    compiler = shutil.which("gcc") or shutil.which("cc")
    include = Path(sysconfig.get_paths()["include"])
    if compiler is None:
        print("build_native: no C compiler; install one: apt-get install gcc", file=sys.stderr)
        return 1
    if not (include / "Python.h").exists():
        print(f"build_native: {include}/Python.h is missing; install the headers: apt-get install python3.11-dev",
              file=sys.stderr)
        return 1
    built = [build(name, compiler, include) for name in MODULES]
    return 0 if all(built) else 1


if __name__ == "__main__":
    sys.exit(main())
