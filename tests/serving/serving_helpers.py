"""Helpers the serving tests share: config files and servers on free loopback ports."""
from __future__ import annotations

import socket
from pathlib import Path

from serving.flags import parse_flags
from serving.server import RunningServer, pick_free_port, start_in_thread

MODEL = "demo"


def write_config(path: Path, models: dict[str, str], *, labels: dict[str, dict[str, int]] | None = None,
                 policy: str = "all {}") -> Path:
    parts = ["model_config_list {"]
    for name, base in models.items():
        parts.append(f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" '
                     f"model_version_policy {{ {policy} }}")
        for label, version in (labels or {}).get(name, {}).items():
            parts.append(f'    version_labels {{ key: "{label}" value: {version} }}')
        parts.append("  }")
    parts.append("}")
    path.write_text("\n".join(parts) + "\n")
    return path


def start_server(tmp_path: Path, *extra: str) -> RunningServer:
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    grpc_port, rest_port = pick_free_port(), pick_free_port()
    while rest_port == grpc_port:  # a port released by the first pick may be handed out again
        rest_port = pick_free_port()
    flags = parse_flags([
        f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--host=127.0.0.1",
        f"--monitoring_config_file={monitoring}", *extra,
    ])
    return start_in_thread(flags)




def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` in a Prometheus exposition, read by prometheus_client's parser
    (so label order and number formatting do not matter)."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(dict(sample.labels), sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels``; None when there is none."""
    for found, value in metric_samples(text, name):
        if labels.items() <= found.items():
            return value
    return None


class LoopThread:
    """An event loop of the server's kind on its own thread, for tests that drive one server part."""

    def __init__(self) -> None:
        import asyncio
        import threading

        from serving.server import new_event_loop

        self._asyncio = asyncio
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 10):  # type: ignore[no-untyped-def]
        """Run ``coroutine`` on the loop and return its result."""
        return self._asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def submit(self, coroutine):  # type: ignore[no-untyped-def]
        """Start ``coroutine`` on the loop; the returned future gives its result."""
        return self._asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# ---- raw HTTP/1.1 over a socket, for tests that send what an HTTP client never would ----

def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes, list[str]]:
    """One response off the socket (leftover bytes stay in ``buffer``); header names in order."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {bytes(buffer)!r}")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    status = int(lines[0].split(" ")[1])
    names = [line.split(":", 1)[0] for line in lines[1:]]
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines[1:]}
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed mid-body")
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return status, headers, body, names


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server closed (or reset) the connection; waits up to 5 s."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def post(path: str, body: bytes, *extra: str) -> bytes:
    """A raw HTTP/1.1 POST with a Content-Length and ``extra`` header lines."""
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body
