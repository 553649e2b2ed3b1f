"""The model server's resident memory before, during and after two attacks: a slow-loris client holding
hundreds of connections, and bodies over --rest_api_max_body_bytes (declared in Content-Length, and
streamed chunked past the limit by several clients at once). The server runs as users run it
(`esteira serve`, its own process, default bounds except a shorter read timeout so the slow-loris phase
ends sooner); RSS is read from /proc/<pid>/status. Pass: after each attack the RSS is within 10 % of
where it started.

    .venv/bin/python benchmarks/hostile/memory_under_attack.py            # writes results.json + RESULTS.md here
    .venv/bin/python benchmarks/hostile/memory_under_attack.py --out /tmp/hostile-bench
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from serving.demo_model import export_demo_model, raw_row  # noqa: E402
from serving.server import pick_free_port  # noqa: E402

READ_TIMEOUT = 5.0
MAX_BODY = 64 * 1024 * 1024  # the server's default --rest_api_max_body_bytes
TOLERANCE = 0.10
ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Sampler:
    """Peak RSS of ``pid`` while an attack runs, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


def predict(rest: str, body: bytes) -> None:
    response = httpx.post(f"{rest}/v1/models/demo:predict", content=body, timeout=10)
    response.raise_for_status()


def settle(pid: int, rest: str, body: bytes, seconds: float = 3.0) -> float:
    """RSS once the attack's connections are gone and a few normal requests have run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        predict(rest, body)
        time.sleep(0.1)
    return rss_mib(pid)


def slow_loris(port: int, connections: int) -> dict[str, int]:
    """``connections`` clients each send a request head a byte per second until the server cuts them off."""
    socks = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /v1/models/demo:predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.setblocking(False)
        socks.append(sock)
    answered = refused = 0
    deadline = time.monotonic() + READ_TIMEOUT + 5
    open_socks = list(socks)
    while open_socks and time.monotonic() < deadline:
        for sock in list(open_socks):
            try:
                data = sock.recv(4096)
                if data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")):
                    answered += data.startswith(b"HTTP/1.1 408")
                    refused += data.startswith(b"HTTP/1.1 503")
                open_socks.remove(sock)
                continue
            except BlockingIOError:
                pass
            except OSError:
                open_socks.remove(sock)
                continue
            with contextlib.suppress(OSError):
                sock.send(b"a")
        time.sleep(1.0)
    for sock in socks:
        sock.close()
    return {"connections": connections, "answered_408": answered, "answered_503": refused,
            "still_open_at_end": len(open_socks)}


def oversized_bodies(port: int, declared: int, streamed: int) -> dict[str, int]:
    """``declared`` requests whose Content-Length is over the limit, then ``streamed`` clients at once
    sending a chunked body 1 MiB at a time until the server refuses it."""
    statuses: list[bytes] = []
    for _ in range(declared):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /v1/models/demo:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                         % (MAX_BODY + 1))
            statuses.append(sock.recv(64)[:12])

    chunk = b"100000\r\n" + b" " * (1 << 20) + b"\r\n"

    def stream() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /v1/models/demo:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(MAX_BODY // (1 << 20) + 8):
                    sock.sendall(chunk)
            except OSError:
                pass  # refused mid-body: the 413 waits in the socket
            try:
                statuses.append(sock.recv(64)[:12])
            except OSError:
                statuses.append(b"reset")

    threads = [threading.Thread(target=stream) for _ in range(streamed)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"declared_over_limit": declared, "streamed_over_limit": streamed,
            "answered_413": sum(s == b"HTTP/1.1 413" for s in statuses),
            "other": len(statuses) - sum(s == b"HTTP/1.1 413" for s in statuses)}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, {platform.platform()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500, help="slow-loris connections (default bound: 1000)")
    parser.add_argument("--declared", type=int, default=200, help="requests with a Content-Length over the limit")
    parser.add_argument("--streamed", type=int, default=8,
                        help="clients streaming chunked bodies past the limit at once")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hostile-bench-"))
    export_demo_model(work / "demo", 1)
    rest_port, grpc_port = pick_free_port(), pick_free_port()
    command = [sys.executable, "-m", "cli", "serve", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
               "--host=127.0.0.1", "--model_name=demo", f"--model_base_path={work / 'demo'}",
               f"--request_read_timeout_seconds={READ_TIMEOUT}", "--log_level=ERROR"]
    server = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rest = f"http://127.0.0.1:{rest_port}"
    body = json.dumps({"signature_name": "predict_raw", "instances": [raw_row(0)]}).encode()
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                predict(rest, body)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        phases = []
        before = settle(server.pid, rest, body)
        for name, attack in (("slow-loris", lambda: slow_loris(rest_port, args.connections)),
                             ("oversized bodies", lambda: oversized_bodies(rest_port, args.declared, args.streamed))):
            start = rss_mib(server.pid)
            with Sampler(server.pid) as sampler:
                outcome = attack()
            after = settle(server.pid, rest, body)
            phases.append({"attack": name, "outcome": outcome, "rss_before_mib": round(start, 1),
                           "rss_peak_during_mib": round(sampler.peak, 1), "rss_after_mib": round(after, 1),
                           "after_vs_before": round(after / start - 1, 4),
                           "within_tolerance": after <= start * (1 + TOLERANCE)})
        overall = {"rss_start_mib": round(before, 1), "rss_end_mib": round(rss_mib(server.pid), 1)}
        overall["within_tolerance"] = overall["rss_end_mib"] <= before * (1 + TOLERANCE)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "load_average": os.getloadavg(),
        "command": " ".join(shlex.quote(a)
                            for a in [".venv/bin/python", "benchmarks/hostile/memory_under_attack.py", *sys.argv[1:]]),
        "server": "esteira serve " + " ".join(command[4:]).replace(str(work), "<tmp>"),
        "tolerance": TOLERANCE, "phases": phases, "overall": overall,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(args.out / "RESULTS.md", results)
    print(json.dumps(results, indent=2))
    return 0 if overall["within_tolerance"] and all(p["within_tolerance"] for p in phases) else 1


def write_report(path: Path, results: dict) -> None:
    lines = [
        "# Memory under attack", "",
        f"- date: {results['date']}",
        f"- machine: {results['machine']} (load average {results['load_average'][0]:.1f})",
        f"- command: `{results['command']}`", f"- server: `{results['server']}`", "",
        "| attack | what happened | RSS before (MiB) | peak during | after | after vs before |",
        "|---|---|---|---|---|---|",
    ]
    for phase in results["phases"]:
        outcome = ", ".join(f"{k} {v}" for k, v in phase["outcome"].items())
        lines.append(f"| {phase['attack']} | {outcome} | {phase['rss_before_mib']} | {phase['rss_peak_during_mib']} "
                     f"| {phase['rss_after_mib']} | {phase['after_vs_before']:+.1%} |")
    overall = results["overall"]
    lines += ["", f"Start {overall['rss_start_mib']} MiB, end {overall['rss_end_mib']} MiB: "
              f"{'within' if overall['within_tolerance'] else 'NOT within'} {results['tolerance']:.0%} of the start.",
              ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
