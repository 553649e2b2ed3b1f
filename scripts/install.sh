#!/usr/bin/env bash
# Create .venv and install the locked environment. Idempotent: a finished install whose lock and
# install scripts are unchanged is only re-verified (the TFX stack is imported once more).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
UV_VERSION="0.9.30"
VENV=.venv
STAMP="$VENV/.esteira-installed"

if ! command -v "$PYTHON" >/dev/null; then
  echo "install: $PYTHON not found; Esteira needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
want=$(cat requirements.lock requirements-nodeps.txt pyproject.toml scripts/install_lock.py scripts/elf_compat.py deploy/lock.py | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "install: .venv is up to date with requirements.lock"
  exec "$VENV/bin/python" scripts/install_lock.py --verify-only
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
"$VENV/bin/python" scripts/install_lock.py
echo "$want" > "$STAMP"
echo "install: done in $(( $(date +%s) - start )) s"
