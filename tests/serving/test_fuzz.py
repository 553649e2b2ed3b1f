"""Bounded fuzz of the REST API: arbitrary JSON and bytes never produce a 5xx, a hang or a dead server.

Every case must be answered within its timeout (a timeout fails the run), and the liveness check runs
after every case, on this run's server thread, so a crash or a blocked event loop fails the case that
caused it."""
from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MODEL = "demo"
ANSWER_WITHIN = 5.0  # seconds; a request of at most a few hundred bytes to the demo model takes milliseconds
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True), st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                   max_leaves=12)
documents = st.one_of(
    values,
    st.fixed_dictionaries({"instances": values}, optional={"signature_name": st.sampled_from(["predict_raw", "x", 3])}),
    st.fixed_dictionaries({"inputs": values},
                          optional={"signature_name": st.sampled_from(["predict_raw", "serving_default"])}),
    st.fixed_dictionaries({"examples": values},
                          optional={"context": values, "signature_name": st.sampled_from(["classify", "regress"])}),
)
paths = st.sampled_from([f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}:classify", f"/v1/models/{MODEL}:regress",
                         f"/v1/models/{MODEL}/versions/1:predict", f"/v1/models/{MODEL}/labels/canary:regress"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(path=paths, document=documents, raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_rest_fuzz_never_5xx(shared_server, client: httpx.Client, path: str, document: object,  # type: ignore[no-untyped-def]
                             raw: bytes | None) -> None:
    body = raw if raw is not None else json.dumps(document, allow_nan=True).encode()
    response = client.post(shared_server.rest_url + path, content=body)  # a hang raises a timeout
    assert response.status_code < 500 or response.status_code == 501, (body, response.text)
    if response.status_code != 200:
        assert "error" in json.loads(response.content)
    assert shared_server.thread.is_alive(), f"the server's event-loop thread died after {body!r}"
    assert client.get(shared_server.rest_url + "/healthz").status_code == 200, body


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One client for every case: a new one per request spends longer building its TLS context than the
    server takes to answer."""
    with httpx.Client(timeout=ANSWER_WITHIN) as shared:
        yield shared
