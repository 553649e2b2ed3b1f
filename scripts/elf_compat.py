"""Make manylinux_2_39 extension modules load on an older glibc/libstdc++ (e.g. Debian 12).

ml-metadata and tensorflow-data-validation 1.21 ship Linux wheels only for glibc >= 2.39. Their
extensions need just six symbols that Debian 12 lacks (four C23 ``strto*`` aliases, a libstdc++
iostream init hook and ``__cxa_call_terminate``). This tool:

1. finds, with ``ldd``, which symbol versions an extension needs that the system does not provide;
2. marks those version requirements weak (VER_FLG_WEAK) so the loader tolerates their absence;
3. clears the version of every symbol bound to them, so the symbols resolve unversioned;
4. adds a small shim library (compiled here) defining the missing symbols as a DT_NEEDED entry,
   found through rpath ``$ORIGIN``.

It is idempotent: an extension that ``ldd`` reports as complete is left alone.
"""
from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SHIM_NAME = "libesteira_glibc_compat.so"
VER_FLG_WEAK = 0x2
VER_NDX_GLOBAL = 1

SHIM_SOURCE = r"""
// Definitions of symbols that glibc >= 2.38 / libstdc++ of GCC >= 13 provide and older systems lack.
#include <cstdlib>
#include <exception>
#include <cxxabi.h>

extern "C" {
long __isoc23_strtol(const char* s, char** end, int base) { return std::strtol(s, end, base); }
long long __isoc23_strtoll(const char* s, char** end, int base) { return std::strtoll(s, end, base); }
unsigned long __isoc23_strtoul(const char* s, char** end, int base) { return std::strtoul(s, end, base); }
unsigned long long __isoc23_strtoull(const char* s, char** end, int base) {
  return std::strtoull(s, end, base);
}
// GCC 13 calls this when an exception escapes a noexcept function.
void __cxa_call_terminate(void* exception) noexcept {
  if (exception) __cxxabiv1::__cxa_begin_catch(exception);
  std::terminate();
}
}

namespace std {
// GCC 13 moved iostream initialisation behind this hook; older libstdc++ initialises on load.
void ios_base_library_init() {}
}
"""

# Symbols the shim defines; anything else missing is a problem this tool cannot solve.
SHIM_SYMBOLS = {
    "__isoc23_strtol", "__isoc23_strtoll", "__isoc23_strtoul", "__isoc23_strtoull",
    "__cxa_call_terminate", "_ZSt21ios_base_library_initv",
}


class CompatError(RuntimeError):
    """The extension needs something the shim cannot supply."""


@dataclass
class _Section:
    name: str
    sh_type: int
    offset: int
    size: int
    link: int
    entsize: int


def _sections(data: bytes) -> list[_Section]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise CompatError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    raw = []
    for i in range(shnum):
        name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + i * shentsize)
        raw.append((name, sh_type, offset, size, link, entsize))
    strtab_off = raw[shstrndx][2]

    def cstr(off: int) -> str:
        return data[off:data.index(b"\0", off)].decode()

    return [_Section(cstr(strtab_off + n), t, o, s, link, e) for n, t, o, s, link, e in raw]


def _find(sections: list[_Section], name: str) -> _Section:
    for section in sections:
        if section.name == name:
            return section
    raise CompatError(f"ELF section {name} not found")


def weaken_versions(data: bytearray, versions: set[str]) -> list[str]:
    """Mark the named version requirements weak and unbind their symbols; return the symbols."""
    sections = _sections(bytes(data))
    verneed = _find(sections, ".gnu.version_r")
    dynstr = sections[verneed.link]

    def dstr(off: int) -> str:
        start = dynstr.offset + off
        return bytes(data[start:data.index(b"\0", start)]).decode()

    weak_indices: set[int] = set()
    offset = verneed.offset
    while True:
        _version, count, _file, aux, nxt = struct.unpack_from("<HHIII", data, offset)
        aux_offset = offset + aux
        for _ in range(count):
            _hash, flags, other, name, aux_next = struct.unpack_from("<IHHII", data, aux_offset)
            if dstr(name) in versions:
                struct.pack_into("<H", data, aux_offset + 4, flags | VER_FLG_WEAK)
                weak_indices.add(other)
            aux_offset += aux_next
        if not nxt:
            break
        offset += nxt

    dynsym = _find(sections, ".dynsym")
    versym = _find(sections, ".gnu.version")
    cleared = []
    for i in range(dynsym.size // dynsym.entsize):
        index_offset = versym.offset + 2 * i
        index, = struct.unpack_from("<H", data, index_offset)
        if index & 0x7FFF in weak_indices:
            name_off, = struct.unpack_from("<I", data, dynsym.offset + i * dynsym.entsize)
            cleared.append(dstr(name_off))
            struct.pack_into("<H", data, index_offset, VER_NDX_GLOBAL)
    return cleared


def missing_versions(extension: Path) -> set[str]:
    """Symbol versions the extension requires that the system's libraries lack (per ldd)."""
    result = subprocess.run(["ldd", str(extension)], capture_output=True, text=True)
    return set(re.findall(r"(?<!weak )version `([^']+)' not found", result.stdout + result.stderr))


def build_shim(target: Path) -> None:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise CompatError("no C++ compiler found: install g++ (apt-get install g++) and retry")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "compat.cc"
        source.write_text(SHIM_SOURCE)
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(target), str(source)], check=True)


def patch_extension(extension: Path, patchelf: str) -> list[str]:
    """Patch one extension in place when the system needs it; return the symbols it rebinds."""
    missing = missing_versions(extension)
    if not missing:
        return []
    data = bytearray(extension.read_bytes())
    symbols = weaken_versions(data, missing)
    unknown = sorted(set(symbols) - SHIM_SYMBOLS)
    if unknown:
        raise CompatError(
            f"{extension.name} needs {', '.join(unknown)} from {', '.join(sorted(missing))}, "
            "which the compatibility shim does not provide; use a system with glibc >= 2.39")
    extension.write_bytes(data)
    build_shim(extension.parent / SHIM_NAME)
    subprocess.run([patchelf, "--add-needed", SHIM_NAME, str(extension)], check=True)
    subprocess.run([patchelf, "--set-rpath", "$ORIGIN", str(extension)], check=True)
    still_missing = missing_versions(extension)
    if still_missing:
        raise CompatError(f"{extension} still misses {', '.join(sorted(still_missing))} after patching")
    return symbols


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extensions", nargs="+", type=Path, help="extension modules (.so) to patch")
    parser.add_argument("--patchelf", default=shutil.which("patchelf") or "patchelf")
    args = parser.parse_args(argv)
    try:
        for extension in args.extensions:
            symbols = patch_extension(extension, args.patchelf)
            state = f"patched ({', '.join(symbols)})" if symbols else "loads as is"
            print(f"compat: {extension.name}: {state}")
    except (CompatError, subprocess.CalledProcessError, OSError) as error:
        print(f"compat: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
