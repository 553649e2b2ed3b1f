"""``--server_processes N``: N worker processes behind one REST and one gRPC port, supervised by a parent.

One Python process answers on one core at a time (the GIL); N workers, each a fresh interpreter running
``esteira serve`` with its own model manager and batch queue, use N cores. Every worker binds the same
ports with SO_REUSEPORT and the kernel spreads new connections over them. The parent imports no
TensorFlow and serves nothing: it starts the workers (spawned, never forked from a process that holds
TensorFlow), ties them to itself (``PR_SET_PDEATHSIG``: a parent killed even by SIGKILL leaves no worker
behind), forwards SIGTERM/SIGINT for a graceful stop of all, and restarts a worker that dies after it
was ready (``MAX_RESTARTS`` within ``RESTART_WINDOW_SECONDS`` at most, then it stops all and exits 1).
A worker that exits before it was ready (a bad model, a port taken) stops all: the parent exits with
its code, as one process would have.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from serving.flags import FlagError, ServerFlags
from serving.observability import multiprocess

log = logging.getLogger("serving.workers")

READY_FD_ENV = "ESTEIRA_SERVER_READY_FD"  # a worker writes one byte there once its ports answer
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
STOP_SECONDS = 30.0  # a worker's graceful stop (5 s for calls in flight, then the models close) before SIGKILL
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
PR_SET_PDEATHSIG = 1
PARENT_PID_ENV = "ESTEIRA_TIED_TO_PID"  # set by a parent for the child esteira serve it starts
LIMITS = ("each worker keeps its own prediction memory: feedback (/v1/models/<name>/feedback) and explain by "
          "request id reach the worker the kernel picks for their connection, which knows only the "
          "predictions it answered itself (others count as unknown ids); the access audit log is one "
          "hash chain per worker (<audit_log_file>.w<i>); serving/README.md, \"Several processes\"")


def check_ports_free(flags: ServerFlags) -> None:
    """Every port the workers will share, bound once without SO_REUSEPORT: a port another server holds
    (even one that shares it with SO_REUSEPORT) is refused here, before a worker joins it."""
    from serving.api.http_server import bound_socket

    for name, port in (("--port", flags.port), ("--rest_api_port", flags.rest_api_port)):
        if not port:
            continue
        try:
            bound_socket(flags.host, port).close()
        except OSError as exc:
            raise OSError(f"cannot bind {name}={port} on {flags.host} ({exc.strerror}); is another server "
                          "running on it? Stop it or pick another port") from None


def metrics_directory() -> tuple[str, bool]:
    """``PROMETHEUS_MULTIPROC_DIR`` when set (created if missing), else a new temporary folder (removed at
    exit); and whether it is temporary. Samples a previous run left there are removed."""
    given = os.environ.get(METRICS_DIR_ENV, "")
    if given:
        os.makedirs(given, mode=0o750, exist_ok=True)
        multiprocess.clean(given)
        return given, False
    return tempfile.mkdtemp(prefix="esteira-metrics-"), True


def tied_to(parent: int) -> dict[str, str]:
    """The environment entry that ties a child ``esteira serve`` to ``parent`` (see tie_to_parent)."""
    return {PARENT_PID_ENV: str(parent)}


def tie_to_parent() -> None:
    """In the child, first thing: SIGTERM when the parent named in the environment dies, and exit at once
    if it already died. Done by the child itself, never in a Popen ``preexec_fn``: that makes Popen fork
    instead of vfork, and a parent running gRPC's EventEngine (an Airflow task after Beam components) then
    restarts its poller in the child, which aborts on the epoll descriptor close_fds closed before exec
    (grpc/grpc#43055: "epoll_wait error: Bad file descriptor", exit -6)."""
    parent = os.environ.pop(PARENT_PID_ENV, "")
    if not parent:
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        os._exit(1)


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    ready_fd: int  # read end of the worker's ready pipe; -1 once read or closed
    ready: bool = False
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Starts, watches and stops the workers; ``run()`` returns the exit code."""

    def __init__(self, flags: ServerFlags, argv: list[str]) -> None:
        self.flags, self.argv = flags, argv
        self.workers: dict[int, Worker] = {}
        self.restarts: list[float] = []
        self.stopping = False
        self.directory = ""

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "cli", "serve", *self.argv, f"--server_worker_index={index}"]

    def spawn(self, index: int) -> Worker:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, METRICS_DIR_ENV: self.directory, READY_FD_ENV: str(write_fd), **tied_to(os.getpid())}
        try:
            process = subprocess.Popen(self.command(index), env=env, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        log.info("worker %d started (pid %d)", index, process.pid)
        return Worker(index, process, read_fd)

    def run(self) -> int:
        check_ports_free(self.flags)
        self.directory, temporary = metrics_directory()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_requested)
        log.warning("%d server processes on REST port %s and gRPC port %s; %s", self.flags.server_processes,
                    self.flags.rest_api_port or "(off)", self.flags.port or "(off)", LIMITS)
        try:
            for index in range(self.flags.server_processes):
                self.workers[index] = self.spawn(index)
            return self._watch()
        finally:
            self._stop_all()
            if temporary:
                shutil.rmtree(self.directory, ignore_errors=True)

    def _stop_requested(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("%s: stopping all %d workers gracefully", signal.Signals(signum).name, len(self.workers))
        self.stopping = True

    def _watch(self) -> int:
        announced = False
        while not self.stopping:
            waiting = [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
            readable: list[int] = []
            if waiting:
                readable = select.select(waiting, [], [], 0.2)[0]
            else:
                time.sleep(0.2)
            for worker in self.workers.values():
                if worker.ready_fd in readable:
                    worker.ready = os.read(worker.ready_fd, 1) == b"1"
                    self._close(worker)
                    if worker.ready and announced:
                        log.info("worker %d ready again (pid %d)", worker.index, worker.process.pid)
            if not announced and all(w.ready for w in self.workers.values()):
                announced = True
                log.info("all %d workers ready (pids %s)", len(self.workers),
                         ", ".join(str(w.process.pid) for w in self.workers.values()))
            for worker in list(self.workers.values()):
                code = worker.process.poll()
                if code is None or self.stopping:
                    continue
                multiprocess.worker_died(self.directory, worker.process.pid)
                self._close(worker)
                if not worker.ready:
                    log.error("worker %d (pid %d) exited with code %d before it was ready; stopping the others",
                              worker.index, worker.process.pid, code)
                    return code or 1
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_SECONDS] + [now]
                if len(self.restarts) > MAX_RESTARTS:
                    log.error("worker %d (pid %d) exited with code %d: more than %d worker restarts within %g s; "
                              "stopping the others", worker.index, worker.process.pid, code, MAX_RESTARTS,
                              RESTART_WINDOW_SECONDS)
                    return 1
                log.error("worker %d (pid %d) exited with code %d; starting it again", worker.index,
                          worker.process.pid, code)
                self.workers[worker.index] = self.spawn(worker.index)
        return 0

    @staticmethod
    def _close(worker: Worker) -> None:
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _stop_all(self) -> None:
        """SIGTERM to every worker, SIGKILL to any still running after ``STOP_SECONDS``."""
        alive = [w for w in self.workers.values() if w.process.poll() is None]
        for worker in alive:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in alive:
            try:
                worker.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid %d) did not stop within %g s; killing it", worker.index,
                          worker.process.pid, STOP_SECONDS)
                worker.process.kill()
                worker.process.wait()
        for worker in self.workers.values():
            self._close(worker)
            if self.directory:
                multiprocess.worker_died(self.directory, worker.process.pid)


def serve_processes(flags: ServerFlags, argv: list[str]) -> int:
    """The parent of ``--server_processes``: returns when every worker has stopped."""
    return Supervisor(flags, argv).run()


def is_worker(flags: ServerFlags) -> bool:
    return flags.server_processes > 1 and flags.server_worker_index >= 0


def worker_metrics_directory() -> str:
    directory = os.environ.get(METRICS_DIR_ENV, "")
    if not directory or not os.path.isdir(directory):
        raise FlagError(f"--server_worker_index is set but {METRICS_DIR_ENV} names no folder; workers are started "
                        "by `esteira serve --server_processes=N`, not by hand")
    return directory


def signal_ready() -> None:
    """Tell the parent this worker answers on its ports."""
    fd = os.environ.pop(READY_FD_ENV, "")
    if fd:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
            os.close(int(fd))
