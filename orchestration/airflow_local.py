"""A real Airflow on 127.0.0.1 for this checkout: scheduler and web server over the Esteira DAGs folder.

``make airflow`` / ``make airflow-down`` call :func:`main`; the tests start the same thing on free ports.
The metadata database is SQLite under the state folder (Airflow's SequentialExecutor, one task at a
time), or the PostgreSQL database AIRFLOW_DB names (``postgresql+psycopg://user:pass@host/db``, with the
LocalExecutor). An admin user with a fresh random password is created for the REST API and the UI;
both are printed and written to ``<state>/admin.json`` (mode 600). The processes are started and
stopped through observability.stack, which records each pid with its command line so ``down`` stops
exactly what ``up`` started.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from observability.stack import StackError, start_process, stop_processes, wait_until

ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = ROOT / "orchestration" / "dags"
AIRFLOW_VENV = ROOT / ".venv-airflow"
ADMIN = "admin"
BASIC_AUTH = "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth"


@dataclass
class AirflowSettings:
    """Where Airflow keeps its state, which port the web server takes, and what the DAGs read."""

    state_dir: Path
    port: int = 8080
    database: str | None = None            # None: SQLite in state_dir
    dag_environment: dict[str, str] = field(default_factory=dict)   # ESTEIRA_* settings for the DAG files

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_uri(self) -> str:
        return self.database or f"sqlite:///{(self.state_dir / 'airflow.db').resolve()}"


def airflow_binary() -> Path:
    binary = AIRFLOW_VENV / "bin" / "airflow"
    if not binary.exists():
        raise StackError(f"{binary} not found; build the Airflow environment with `make airflow-install`")
    return binary


def environment(settings: AirflowSettings) -> dict[str, str]:
    """Airflow's configuration as environment variables (nothing is written to airflow.cfg by hand)."""
    postgres = settings.database_uri.startswith("postgresql")
    return {
        **os.environ,
        **settings.dag_environment,
        "AIRFLOW_HOME": str(settings.state_dir.resolve()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor" if postgres else "SequentialExecutor",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",       # the DAG files import TFX and TensorFlow
        "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "300",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.database_uri,
        "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(settings.port),
        "AIRFLOW__WEBSERVER__WORKERS": "1",
        "AIRFLOW__API__AUTH_BACKENDS": BASIC_AUTH,            # the REST API takes the admin's basic auth
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
        "TF_USE_LEGACY_KERAS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def airflow(settings: AirflowSettings, *args: str) -> str:
    """Run one ``airflow`` command to completion; its output, or a StackError with it."""
    result = subprocess.run([str(airflow_binary()), *args], env=environment(settings), capture_output=True,
                            text=True, cwd=ROOT)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise StackError(f"airflow {' '.join(args[:2])} failed ({result.returncode}):\n{tail}")
    return result.stdout


def create_admin(settings: AirflowSettings) -> dict[str, str]:
    """A fresh admin password each start (the user is reset), kept in <state>/admin.json, mode 600."""
    password = secrets.token_urlsafe(18)
    existing = airflow(settings, "users", "list", "--output", "json")
    if any(user.get("username") == ADMIN for user in json.loads(existing or "[]")):
        airflow(settings, "users", "delete", "--username", ADMIN)
    # --password=... : a random password may begin with '-', which argparse would take for an option
    airflow(settings, "users", "create", "--username", ADMIN, f"--password={password}", "--role", "Admin",
            "--firstname", "Esteira", "--lastname", "Admin", "--email", "admin@localhost")
    credentials = {"url": settings.url, "username": ADMIN, "password": password}
    path = settings.state_dir / "admin.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(credentials))
    return credentials


@contextlib.contextmanager
def _environment_of_children(env: dict[str, str]) -> Iterator[None]:
    """os.environ as ``env`` while children are spawned (observability.stack's start_process inherits it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _healthy(url: str) -> bool:
    body = httpx.get(f"{url}/health", timeout=5).json()
    return body.get("metadatabase", {}).get("status") == "healthy" and \
        body.get("scheduler", {}).get("status") == "healthy"


def start_airflow(settings: AirflowSettings, timeout: float = 180.0) -> dict[str, str]:
    """Migrate the metadata database, create the admin, start scheduler and web server, wait for health."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    airflow_binary()
    airflow(settings, "db", "migrate")
    credentials = create_admin(settings)
    binary = str(airflow_binary())
    processes = []
    with _environment_of_children(environment(settings)):
        for name, argv in (("airflow-scheduler", [binary, "scheduler"]),
                           ("airflow-webserver", [binary, "webserver", "--port", str(settings.port),
                                                  "--hostname", "127.0.0.1", "--workers", "1"])):
            processes.append((name, *start_process(name, argv, settings.state_dir)))
    try:
        wait_until(lambda: _healthy(settings.url), timeout, f"Airflow at {settings.url}",
                   processes[-1][1], processes[-1][2])
    except StackError:
        stop_processes(settings.state_dir)
        raise
    for name, _process, _log in processes:
        _record_retitled(settings.state_dir, name)
    return credentials


def _record_retitled(state_dir: Path, name: str) -> None:
    """Airflow's processes retitle themselves (setproctitle: argv joined into one string) once running, and
    observability.stack stops a pid only while its command line is the recorded one: record the new one."""
    pid_file = state_dir / "pids" / f"{name}.pid"
    record = json.loads(pid_file.read_text())
    raw = Path(f"/proc/{record['pid']}/cmdline").read_bytes()
    pid_file.write_text(json.dumps({**record, "cmdline": raw.decode(errors="replace").split("\0")[:-1]}))
