"""The local stack: the demo model's server, Prometheus, Alertmanager and MLflow on 127.0.0.1.

``make stack`` / ``make stack-down`` call :func:`main`; the live tests start the same stack with
free ports. Each process is started in its own session and its pid written to
``<state_dir>/pids/<name>.pid`` with its command line, so ``down`` stops exactly what ``up``
started (and not a process that later reused the pid).
"""
from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "configs" / "monitoring"
RULE_FILES = (MONITORING / "rules" / "recording.yml", MONITORING / "rules" / "alerts.yml")
MODEL = "demo"
SERVER_JOB = "esteira-serving"


class StackError(RuntimeError):
    """A part of the stack is missing, could not start, or did not become ready."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
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
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise StackError(f"{what}: not ready after {timeout:.0f} s" + (f"; log {log}:\n{_tail(log)}" if log else ""))


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
    # Popen returns after exec, so /proc holds the final command line (a script's shows its interpreter)
    cmdline = _cmdline(process.pid) or argv
    (_pid_dir(state_dir) / f"{name}.pid").write_text(json.dumps({"pid": process.pid, "cmdline": cmdline}))
    return process, log


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
            _reap(pid)
            stopped.append(pid_file.stem)
        pid_file.unlink()
    return stopped


def _signal(pid: int, signum: int) -> None:
    """Signal the whole session ``start_process`` made (MLflow's server runs its workers as children)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum) if os.getpgid(pid) == pid else os.kill(pid, signum)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child (started by an earlier `up`): init reaps it
        os.waitpid(pid, os.WNOHANG)


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


def write_model_configs(state_dir: Path) -> tuple[Path, Path]:
    """Two demo versions behind the labels stable (1) and canary (2), split 80/20 by the router."""
    models_config = state_dir / "models.config"
    models_config.write_text(
        "model_config_list {\n  config {\n"
        f'    name: "{MODEL}"\n    base_path: "{(state_dir / "models" / MODEL).resolve()}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { specific { versions: 1 versions: 2 } }\n"
        '    version_labels { key: "stable" value: 1 }\n    version_labels { key: "canary" value: 2 }\n'
        "  }\n}\n")
    canary = state_dir / "canary.json"
    canary.write_text(json.dumps({"models": {MODEL: {"stable": 80, "canary": 20}}}))
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
    models_config, canary = write_model_configs(config.state_dir)
    esteira = Path(sys.executable).with_name("esteira")
    return [str(esteira), "serve", f"--port={config.grpc_port}", f"--rest_api_port={config.rest_port}",
            "--host=127.0.0.1", f"--model_config_file={models_config}", f"--canary_config_file={canary}",
            "--allow_version_labels_for_unavailable_models",  # the versions may still be exporting
            f"--monitoring_config_file={ROOT / 'configs/serving/monitoring.config'}", "--enable_batching",
            f"--batching_parameters_file={ROOT / 'configs/serving/batching.config'}"]


# ---- the stack -------------------------------------------------------------------------------------

def _versions_available(rest_url: str) -> bool:
    status = httpx.get(f"{rest_url}/v1/models/{MODEL}", timeout=2).json()
    states = [v.get("state") for v in status.get("model_version_status", [])]
    return len(states) == 2 and all(s == "AVAILABLE" for s in states)


def _target_up(prometheus_url: str) -> bool:
    body = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": f'up{{job="{SERVER_JOB}"}} == 1'},
                     timeout=2).json()
    return bool(body["data"]["result"])


def start_mlflow(config: StackConfig) -> tuple[subprocess.Popen, Path]:
    """A tracking server like a team's: sqlite store and proxied artifacts under the state folder."""
    store = (config.state_dir / "mlflow").resolve()
    store.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # no job runner process
    return start_process("mlflow", [
        str(Path(sys.executable).with_name("mlflow")), "server", f"--backend-store-uri=sqlite:///{store / 'mlflow.db'}",
        f"--artifacts-destination={store / 'artifacts'}", "--host=127.0.0.1", f"--port={config.mlflow_port}",
        "--workers=1"], config.state_dir)


def start_stack(config: StackConfig) -> dict[str, str]:
    """Start the server, Prometheus, Alertmanager (and MLflow); return name -> URL once each answers."""
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
    export = export_demo_models(config.state_dir)

    server, server_log = start_process("server", server_argv(config), config.state_dir)
    alertmanager, am_log = start_process("alertmanager", [
        alertmanager_bin, f"--config.file={config.alertmanager_config}",
        f"--storage.path={config.state_dir / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{config.alertmanager_port}", "--cluster.listen-address="], config.state_dir)
    prometheus, prom_log = start_process("prometheus", [
        prometheus_bin, f"--config.file={write_prometheus_config(config)}",
        f"--storage.tsdb.path={config.state_dir / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{config.prometheus_port}", "--web.enable-lifecycle"], config.state_dir)

    mlflow = start_mlflow(config) if config.mlflow_port else None
    wait_until(lambda: httpx.get(f"{config.alertmanager_url}/-/ready", timeout=2).status_code == 200, 30,
               "Alertmanager", alertmanager, am_log)
    wait_until(lambda: httpx.get(f"{config.prometheus_url}/-/ready", timeout=2).status_code == 200, 30,
               "Prometheus", prometheus, prom_log)
    if export is not None and export.wait(timeout=300) != 0:
        raise StackError(f"exporting the demo model failed:\n{_tail(config.state_dir / 'export.log')}")
    wait_until(lambda: _versions_available(config.rest_url), 120, "model server (demo versions 1 and 2)",
               server, server_log)
    wait_until(lambda: _target_up(config.prometheus_url), 30, "Prometheus scraping the model server", prometheus,
               prom_log)
    urls = {
        "model server REST": config.rest_url,
        "model server gRPC": f"127.0.0.1:{config.grpc_port}",
        "metrics": f"{config.rest_url}/monitoring/prometheus/metrics",
        "Prometheus": config.prometheus_url,
        "Alertmanager": config.alertmanager_url,
    }
    if mlflow is not None:
        mlflow_url = f"http://127.0.0.1:{config.mlflow_port}"
        wait_until(lambda: httpx.get(f"{mlflow_url}/health", timeout=2).status_code == 200, 120,
                   "MLflow server", *mlflow)
        urls["MLflow (MLFLOW_TRACKING_URI)"] = mlflow_url
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.stack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=ROOT / "outputs" / "stack")
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--grpc-port", type=int, default=8500)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument("--mlflow-port", type=int, default=5000, help="0: no MLflow server")
    args = parser.parse_args(argv)
    if args.action == "down":
        stopped = stop_processes(args.state_dir)
        print(f"stack: stopped {', '.join(stopped)}" if stopped else f"stack: nothing running from {args.state_dir}")
        return 0
    if any(_pid_dir(args.state_dir).glob("*.pid")):
        print(f"stack: already started from {args.state_dir}; run `make stack-down` first", file=sys.stderr)
        return 1
    config = StackConfig(args.state_dir, args.rest_port, args.grpc_port, args.prometheus_port, args.alertmanager_port,
                         args.mlflow_port or None)
    try:
        urls = start_stack(config)
    except StackError as exc:
        stop_processes(args.state_dir)
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    width = max(map(len, urls))
    for name, url in urls.items():
        print(f"  {name:<{width}}  {url}")
    print(f"stack: logs in {args.state_dir / 'logs'}; stop with `make stack-down`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
