"""The ASGI app's body bounds on a running server: an oversized body and a slow one do not hurt the next request."""
from __future__ import annotations

from pathlib import Path

import httpx
from serving_helpers import MODEL, start_server

from serving.demo_model import raw_row

BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


def test_oversized_and_slow_clients_do_not_hurt(model_store: Path, tmp_path: Path) -> None:
    import socket

    server = start_server(tmp_path, f"--model_name={MODEL}", f"--model_base_path={model_store / MODEL}",
                          "--rest_api_max_body_bytes=4096", "--request_read_timeout_seconds=0.5")
    try:
        big = httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict",
                         content=b'{"instances": [' + b"1.0," * 5000 + b"1.0]}")
        assert big.status_code == 413 and "exceeds the limit of 4096 bytes" in big.json()["error"]
        with socket.create_connection(("127.0.0.1", server.server.rest_port)) as slow:
            slow.sendall(b"POST /v1/models/demo:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
            slow.settimeout(5)
            reply = slow.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408")
        assert httpx.post(f"{server.rest_url}/v1/models/{MODEL}:predict", json=BODY).status_code == 200
    finally:
        server.stop()
