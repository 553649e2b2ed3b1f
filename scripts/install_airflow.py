"""Install requirements-airflow.lock into the running virtualenv (.venv-airflow).

Why a second environment: TFX 1.21's AirflowDagRunner needs Airflow 2, and Airflow 2.11 needs SQLAlchemy < 2
and Flask < 3, which requirements.lock (MLflow's server, the dev tools) cannot take. The install itself is
requirements.lock's (hash-checked wheels, the manylinux_2_39 wheels with the glibc compatibility step, the
no-deps packages, Esteira editable, the TFX import check), run on the other lock; then Airflow and DVC must
import too.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import install_lock  # noqa: E402

AIRFLOW_LOCK = HERE.parent / "requirements-airflow.lock"
AIRFLOW_CHECK = (
    "import airflow, dvc.version, tfx.orchestration.airflow.airflow_dag_runner; "
    "print('verified: apache-airflow', airflow.__version__, '| dvc', dvc.version.__version__)"
)


def verify_airflow() -> None:
    """Import Airflow, TFX's Airflow runner and DVC in a fresh interpreter; exit with the reason if one fails."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               AIRFLOW_HOME=str(Path(sys.prefix) / "airflow-home"))
    check = subprocess.run([sys.executable, "-c", AIRFLOW_CHECK], env=env, capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"airflow-install: Airflow does not import: {last}\n"
                 "Fix: run `make airflow-install` again; if it persists, delete .venv-airflow and retry.")
    print(check.stdout.strip())


def main() -> None:
    install_lock.LOCK = AIRFLOW_LOCK   # the same steps, the orchestration lock
    if sys.argv[1:] != ["--verify-only"]:
        install_lock.main()
    verify_airflow()


if __name__ == "__main__":
    main()
