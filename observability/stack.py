"""The local stack: a model server, Prometheus, Alertmanager and MLflow on 127.0.0.1.

``make stack`` serves the newest version the use case's Pusher published (both labels on it) and
opens the use case's own MLflow store, so what `make demo` trained and logged is what the stack
shows; ``--demo`` serves two synthetic versions instead (the live tests, which need a canary that
differs). ``make stack`` / ``make stack-down`` call :func:`main`; the live tests start the same
stack with free ports. Each process is started in its own session and its pid written to
``<state_dir>/pids/<name>.pid`` with its command line, so ``down`` stops exactly what ``up``
started (and not a process that later reused the pid).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from errors import EsteiraError

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "configs" / "monitoring"
RULE_FILES = (MONITORING / "rules" / "recording.yml", MONITORING / "rules" / "alerts.yml")
MODEL = "demo"
SERVER_JOB = "esteira-serving"
CANARY_SPLIT = {"stable": 80, "canary": 20}


class StackError(EsteiraError, RuntimeError):
    """A part of the stack is missing, could not start, or did not become ready."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR as the servers bind: connections a
    just-stopped server closed (TIME_WAIT, up to a minute) do not hold the port, a listener does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise StackError(f"{names[0]} not found on PATH; install it with "
                     "`apt-get install prometheus prometheus-alertmanager` (Debian/Ubuntu)")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(check: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Poll ``check`` until true; fail naming ``what``, with the log's tail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"{what}: the process exited with {process.returncode}; log {log}:\n{_tail(log)}"
                             if log else f"{what}: the process exited with {process.returncode}")
        try:
            if check():
                return
        except (httpx.HTTPError, ValueError):  # not listening yet, or a starting server's non-JSON 503 body
            pass
        time.sleep(0.25)
    raise StackError(f"{what}: not ready after {timeout:.0f} s" + (f"; log {log}:\n{_tail(log)}" if log else ""))


@dataclass(frozen=True)
class ServedModel:
    """A use case's published model: the name it is served under, the Pusher's base path, its MLflow store."""

    name: str
    base_path: Path
    tracking_uri: str  # sqlite:///... (the embedded store the stack's MLflow opens) or a server's URL
    experiment: str
    config_file: Path

    @classmethod
    def from_config(cls, config_file: Path) -> ServedModel:
        """Read what the stack needs from a use-case config (no TensorFlow, no TFX: about a second)."""
        from pipeline.config import load_config
        from tracking.store import LOCAL_FOLDER, resolve_target

        config = load_config(config_file)
        target = resolve_target(config.tracking.uri, config.pipeline.root / LOCAL_FOLDER)
        return cls(config.serving.model_name, config.serving.base_path, target.uri,
                   config.tracking.experiment or config.pipeline.name, config_file)

    def newest_version(self) -> int:
        """The newest published version, or a StackError saying how to publish one."""
        from serving.core.source import versions_on_disk

        versions = versions_on_disk(str(self.base_path))
        if not versions:
            raise StackError(f"no published version of {self.name!r} under {self.base_path}; run "
                             f"`make demo` (or `esteira run --config {self.config_file}`) first, or "
                             "`make stack STACK_ARGS=--demo` for the synthetic demo model")
        return max(versions)

    @property
    def embedded_store(self) -> Path | None:
        """The sqlite database the pipeline logs to when no tracking server is configured."""
        return Path(self.tracking_uri.removeprefix("sqlite:///")) if self.tracking_uri.startswith("sqlite:///") \
            else None


@dataclass
class StackConfig:
    """Where the stack keeps its state and which loopback ports it takes."""

    state_dir: Path
    rest_port: int = 8501
    grpc_port: int = 8500
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    mlflow_port: int | None = None  # None: no tracking server (the live tests need none)
    scrape_interval: str = "5s"
    rule_files: tuple[Path, ...] = RULE_FILES
    alertmanager_config: Path = MONITORING / "alertmanager.yml"
    model: ServedModel | None = None  # None: the synthetic demo model, versions 1 and 2

    @property
    def model_name(self) -> str:
        return self.model.name if self.model else MODEL

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"


# ---- processes ------------------------------------------------------------------------------------

def _pid_dir(state_dir: Path) -> Path:
    return state_dir / "pids"


def start_process(name: str, argv: list[str], state_dir: Path) -> tuple[subprocess.Popen, Path]:
    """Start ``argv`` in its own session, log to ``<state_dir>/logs/<name>.log``, record its pid."""
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _pid_dir(state_dir).mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=ROOT, start_new_session=True)
    cmdline = _exec_cmdline(process.pid) or argv
    (_pid_dir(state_dir) / f"{name}.pid").write_text(json.dumps({"pid": process.pid, "cmdline": cmdline}))
    return process, log


def _exec_cmdline(pid: int, timeout: float = 5.0) -> list[str]:
    """The command line of a process Popen just started (a script's shows its interpreter). Popen returns when
    the exec has closed the close-on-exec pipe, which is a moment before the kernel sets up the new argv; read
    then, /proc/<pid>/cmdline is empty, and a recorded ``argv`` would never match, so ``down`` left it running."""
    deadline = time.monotonic() + timeout
    while not (cmdline := _cmdline(pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return cmdline


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def stop_processes(state_dir: Path, timeout: float = 15.0) -> list[str]:
    """Stop every process recorded under ``state_dir`` (TERM, then KILL); returns what was stopped."""
    stopped = []
    for pid_file in sorted(_pid_dir(state_dir).glob("*.pid")):
        record = json.loads(pid_file.read_text())
        pid, cmdline = int(record["pid"]), record["cmdline"]
        if _cmdline(pid) == cmdline:
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _cmdline(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.1)
            if _cmdline(pid):
                _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0  # SIGKILL lands at once but not synchronously: reap what dies
            while not _reap(pid) and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            stopped.append(pid_file.stem)
        pid_file.unlink()
    return stopped


def _signal(pid: int, signum: int) -> None:
    """Signal the whole session ``start_process`` made (MLflow's server runs its workers as children)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum) if os.getpgid(pid) == pid else os.kill(pid, signum)


def _reap(pid: int) -> bool:
    """Collect ``pid`` if it is our child and has ended; True when there is nothing left for us to wait for."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # not our child (started by an earlier `up`): init reaps it
        return True


# ---- configuration --------------------------------------------------------------------------------

def write_prometheus_config(config: StackConfig) -> Path:
    """The committed prometheus.yml with this stack's targets, interval and rule files."""
    document = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    document["global"] = {"scrape_interval": config.scrape_interval, "evaluation_interval": config.scrape_interval}
    document["rule_files"] = [str(path.resolve()) for path in config.rule_files]
    document["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{config.alertmanager_port}"]
    serving = next(job for job in document["scrape_configs"] if job["job_name"] == SERVER_JOB)
    serving["static_configs"][0]["targets"] = [f"127.0.0.1:{config.rest_port}"]
    document["scrape_configs"] = [serving]  # no gateway runs in the local stack
    target = config.state_dir / "prometheus.yml"
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def write_model_configs(state_dir: Path, model: ServedModel | None = None) -> tuple[Path, Path]:
    """The models.config and the router's split: for the demo, versions 1 (stable) and 2 (canary); for a use
    case, its newest version behind both labels, so `esteira promote`/the console can move canary later."""
    if model is None:
        name, base, labels = MODEL, (state_dir / "models" / MODEL).resolve(), {"stable": 1, "canary": 2}
    else:
        newest = model.newest_version()
        name, base, labels = model.name, model.base_path.resolve(), {"stable": newest, "canary": newest}
    versions = " ".join(f"versions: {v}" for v in sorted(set(labels.values())))
    label_lines = "".join(f'    version_labels {{ key: "{key}" value: {value} }}\n' for key, value in labels.items())
    models_config = state_dir / "models.config"
    models_config.write_text(
        "model_config_list {\n  config {\n"
        f'    name: "{name}"\n    base_path: "{base}"\n'
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ {versions} }} }}\n"
        f"{label_lines}  }}\n}}\n")
    canary = state_dir / "canary.json"
    canary.write_text(json.dumps({"models": {name: CANARY_SPLIT}}))
    return models_config, canary


def export_demo_models(state_dir: Path) -> subprocess.Popen | None:
    """Start exporting versions 1 and 2 of the demo model (with drift references), unless present.

    The export runs beside the server's start: the server polls the base path and loads each
    version when its folder appears complete."""
    base = state_dir / "models" / MODEL
    base.mkdir(parents=True, exist_ok=True)
    if (base / "1").exists() and (base / "2").exists():
        return None
    script = (
        "import sys\nfrom pathlib import Path\nfrom serving.demo_model import export_demo_model\n"
        "for version, bias in ((1, 0.0), (2, 0.5)):\n"
        "    if not (Path(sys.argv[1]) / str(version)).exists():\n"
        "        export_demo_model(sys.argv[1], version, bias=bias)\n"
    )
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(state_dir / "export.log", "wb") as log:  # the child holds its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-c", script, str(base)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def server_argv(config: StackConfig) -> list[str]:
    models_config, canary = write_model_configs(config.state_dir, config.model)
    esteira = Path(sys.executable).with_name("esteira")
    return [str(esteira), "serve", f"--port={config.grpc_port}", f"--rest_api_port={config.rest_port}",
            "--host=127.0.0.1", f"--model_config_file={models_config}", f"--canary_config_file={canary}",
            "--allow_version_labels_for_unavailable_models",  # the versions may still be exporting
            f"--monitoring_config_file={ROOT / 'configs/serving/monitoring.config'}", "--enable_batching",
            f"--batching_parameters_file={ROOT / 'configs/serving/batching.config'}"]


# ---- the stack -------------------------------------------------------------------------------------

def _versions_available(rest_url: str, name: str, count: int) -> bool:
    status = httpx.get(f"{rest_url}/v1/models/{name}", timeout=2).json()
    states = [v.get("state") for v in status.get("model_version_status", [])]
    return len(states) == count and all(s == "AVAILABLE" for s in states)


def _target_up(prometheus_url: str) -> bool:
    body = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": f'up{{job="{SERVER_JOB}"}} == 1'},
                     timeout=2).json()
    return bool(body["data"]["result"])


def start_mlflow(config: StackConfig) -> tuple[subprocess.Popen, Path]:
    """A tracking server like a team's over the use case's own store (the runs `make demo` logged, and every
    run logged while the stack is up), or over a fresh store under the state folder for the demo model."""
    embedded = config.model.embedded_store if config.model else None
    if embedded is not None:
        embedded.parent.mkdir(parents=True, exist_ok=True)
        database, artifacts = embedded, embedded.parent / "artifacts"
    else:
        store = (config.state_dir / "mlflow").resolve()
        store.mkdir(parents=True, exist_ok=True)
        database, artifacts = store / "mlflow.db", store / "artifacts"
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no job runner process
    return start_process("mlflow", [
        str(Path(sys.executable).with_name("mlflow")), "server", f"--backend-store-uri=sqlite:///{database}",
        f"--artifacts-destination={artifacts}", "--host=127.0.0.1", f"--port={config.mlflow_port}",
        "--workers=1"], config.state_dir)


def runs_view(mlflow_url: str, experiment: str) -> str:
    """The experiment's runs table (MLflow 3 opens on its GenAI traces view otherwise)."""
    found = httpx.get(f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
                      params={"experiment_name": experiment}, timeout=5)
    if found.status_code != 200:  # no run logged yet: the experiments list
        return f"{mlflow_url}/#/experiments"
    return f"{mlflow_url}/#/experiments/{found.json()['experiment']['experiment_id']}/runs"


def prometheus_page(prometheus_url: str, page: str) -> str:
    """A Prometheus UI page that answers: Prometheus 2.x as Debian ships it serves only the classic UI."""
    for candidate in (f"{prometheus_url}/{page}", f"{prometheus_url}/classic/{page}"):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(candidate, timeout=5).status_code == 200:
                return candidate
    return f"{prometheus_url}/{page}"


def start_stack(config: StackConfig) -> dict[str, str]:
    """Start the server, Prometheus, Alertmanager (and MLflow); return name -> URL once each answers."""
    if config.model is not None:
        config.model.newest_version()  # nothing to serve: say so before starting anything
    busy = [f"{name} {port}" for name, port in (
        ("--rest-port", config.rest_port), ("--grpc-port", config.grpc_port),
        ("--prometheus-port", config.prometheus_port), ("--alertmanager-port", config.alertmanager_port),
        ("--mlflow-port", config.mlflow_port)) if port and not _port_free(port)]
    if busy:
        raise StackError(f"ports in use on 127.0.0.1: {', '.join(busy)}; stop what uses them "
                         "(`make stack-down` if it is an earlier stack) or pass other ports")
    prometheus_bin = _binary("prometheus")
    alertmanager_bin = _binary("prometheus-alertmanager", "alertmanager")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    export = export_demo_models(config.state_dir) if config.model is None else None

    server, server_log = start_process("server", server_argv(config), config.state_dir)
    alertmanager, am_log = start_process("alertmanager", [
        alertmanager_bin, f"--config.file={config.alertmanager_config}",
        f"--storage.path={config.state_dir / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{config.alertmanager_port}", "--cluster.listen-address="], config.state_dir)
    prometheus, prom_log = start_process("prometheus", [
        prometheus_bin, f"--config.file={write_prometheus_config(config)}",
        f"--storage.tsdb.path={config.state_dir / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{config.prometheus_port}", "--web.enable-lifecycle"], config.state_dir)

    remote_tracking = config.model is not None and config.model.embedded_store is None
    mlflow = start_mlflow(config) if config.mlflow_port and not remote_tracking else None
    wait_until(lambda: httpx.get(f"{config.alertmanager_url}/-/ready", timeout=2).status_code == 200, 30,
               "Alertmanager", alertmanager, am_log)
    wait_until(lambda: httpx.get(f"{config.prometheus_url}/-/ready", timeout=2).status_code == 200, 30,
               "Prometheus", prometheus, prom_log)
    if export is not None and export.wait(timeout=300) != 0:
        raise StackError(f"exporting the demo model failed:\n{_tail(config.state_dir / 'export.log')}")
    name, count = config.model_name, 2 if config.model is None else 1
    wait_until(lambda: _versions_available(config.rest_url, name, count), 180,
               f"model server ({name}, {count} version{'s' if count > 1 else ''})", server, server_log)
    wait_until(lambda: _target_up(config.prometheus_url), 30, "Prometheus scraping the model server", prometheus,
               prom_log)
    version = "versions 1 (stable) and 2 (canary)" if config.model is None else \
        f"version {config.model.newest_version()} (stable and canary)"
    urls = {
        f"model {name}": f"{config.rest_url}/v1/models/{name}  ({version})",
        "model server gRPC": f"127.0.0.1:{config.grpc_port}",
        "metrics": f"{config.rest_url}/monitoring/prometheus/metrics",
        "Prometheus targets": prometheus_page(config.prometheus_url, "targets"),
        "Prometheus alerts": prometheus_page(config.prometheus_url, "alerts"),
        "Alertmanager": config.alertmanager_url,
    }
    if mlflow is not None:
        mlflow_url = f"http://127.0.0.1:{config.mlflow_port}"
        wait_until(lambda: httpx.get(f"{mlflow_url}/health", timeout=2).status_code == 200, 120,
                   "MLflow server", *mlflow)
        urls["MLflow runs"] = runs_view(mlflow_url, config.model.experiment) if config.model else mlflow_url
        urls["MLFLOW_TRACKING_URI"] = mlflow_url
    elif remote_tracking and config.model is not None:
        urls["MLflow (the config's tracking server)"] = config.model.tracking_uri
    write_state(config, mlflow_url=f"http://127.0.0.1:{config.mlflow_port}" if mlflow is not None else
                (config.model.tracking_uri if config.model is not None else None))
    return urls


STATE_FILE = "stack.json"


def write_state(config: StackConfig, mlflow_url: str | None) -> Path:
    """What clients of a running stack need (`make console`): its addresses and the models.config it serves."""
    state = {"model": config.model_name, "rest_url": config.rest_url, "grpc": f"127.0.0.1:{config.grpc_port}",
             "prometheus_url": config.prometheus_url, "mlflow_url": mlflow_url,
             "model_config_file": str((config.state_dir / "models.config").resolve())}
    target = config.state_dir / STATE_FILE
    target.write_text(json.dumps(state, indent=2))
    return target


def read_state(state_dir: Path) -> dict[str, str | None]:
    """The running stack's addresses, or a StackError saying to start it."""
    try:
        state = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        raise StackError(f"no running stack in {state_dir}; start it with `make stack`") from None
    if not is_started(state_dir):
        raise StackError(f"the stack in {state_dir} is stopped; start it with `make stack`")
    return state


def is_started(state_dir: Path) -> bool:
    """Whether processes started from ``state_dir`` are recorded (``up`` ran and ``down`` did not)."""
    return any(_pid_dir(state_dir).glob("*.pid"))


def stop_stack(state_dir: Path) -> list[str]:
    """Stop what ``up`` started from ``state_dir`` and forget its addresses; the names of what stopped."""
    stopped = stop_processes(state_dir)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped
