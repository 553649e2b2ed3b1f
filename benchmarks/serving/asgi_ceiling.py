"""The REST ceiling: a bare uvicorn ASGI app (httptools, uvloop), no model and no server code of ours.

It parses the same JSON body with orjson and answers predictions of the demo model's shape (one
``[p]`` per instance), so no server built on uvicorn can answer faster on this machine: what Esteira
spends beyond it is our own code and the model call.

    python benchmarks/serving/asgi_ceiling.py PORT
"""
from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
              send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    instances = orjson.loads(body)["instances"]
    out = orjson.dumps({"predictions": [[0.5] for _ in instances]})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]})
    await send({"type": "http.response.body", "body": out})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop", lifespan="off",
                ws="none", log_level="warning", access_log=False)
