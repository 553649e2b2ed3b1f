#!/usr/bin/env bash
# Create .venv-airflow (Airflow 2 for TFX's AirflowDagRunner, DVC) from requirements-airflow.lock.
# Idempotent like scripts/install.sh: a finished install whose inputs are unchanged is only re-verified.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
UV_VERSION="0.9.30"
VENV=.venv-airflow
STAMP="$VENV/.esteira-installed"
INPUTS=(requirements-airflow.lock requirements-nodeps.txt pyproject.toml scripts/install_lock.py
        scripts/install_airflow.py scripts/elf_compat.py deploy/lock.py)

if ! command -v "$PYTHON" >/dev/null; then
  echo "airflow-install: $PYTHON not found; Esteira needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
want=$(cat "${INPUTS[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exec "$VENV/bin/python" scripts/install_airflow.py --verify-only
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
"$VENV/bin/python" scripts/install_airflow.py
echo "$want" > "$STAMP"
echo "airflow-install: done in $(( $(date +%s) - start )) s"
