"""What REST and gRPC share (api/service.py): the inference timeout and the per-class counts."""
from __future__ import annotations

import asyncio

import numpy as np

from serving.observability.metrics import Registry
from serving.protocol.errors import ServingError


def test_inference_timeout_answers_deadline_exceeded_and_spares_the_rest() -> None:
    """The server-wide timeout (one timer for every request): a late request answers DEADLINE_EXCEEDED,
    requests in time are untouched, and a cancellation from outside is not mistaken for the timeout."""
    from serving.api.service import Service

    async def scenario() -> tuple[list, bool]:
        service = Service(backend=None, metrics=Registry(), timeout_seconds=0.1)  # type: ignore[arg-type]

        async def work(seconds: float) -> float:
            await asyncio.sleep(seconds)
            return seconds

        async def one(seconds: float):  # type: ignore[no-untyped-def]
            try:
                return await service.bounded(work(seconds))
            except ServingError as exc:
                return exc.code_name

        results = await asyncio.gather(one(0.01), one(0.5), one(0.02), one(0.3), one(0.05))
        outside = asyncio.get_running_loop().create_task(service.bounded(work(0.5)))
        await asyncio.sleep(0.02)
        outside.cancel()
        try:
            await outside
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        after = await one(0.01)  # the queue keeps working after expiries and cancellations
        return [*results, after], cancelled

    results, cancelled = asyncio.run(scenario())
    assert results == [0.01, "DEADLINE_EXCEEDED", 0.02, "DEADLINE_EXCEEDED", 0.05, 0.01]
    assert cancelled


def test_predicted_classes_counted_alike_for_few_and_many_rows() -> None:
    from serving.api.service import Service

    rng = np.random.default_rng(3)
    for rows in (1, 16, 17, 300):
        scores = rng.random((rows, 1)).astype(np.float32)
        scores[0, 0] = np.nan  # counted as class 0, as numpy's comparison does
        service = Service(backend=None, metrics=Registry())  # type: ignore[arg-type]
        service.count_classes("m", 1, {"p": scores})
        positives = int(np.count_nonzero(scores >= 0.5))
        assert service.metrics.predictions.value(("m", "1", "1")) == positives
        assert service.metrics.predictions.value(("m", "1", "0")) == rows - positives
