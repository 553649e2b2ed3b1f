"""Closed-loop gRPC Predict load in Python (fallback when h2load is missing); prints one JSON line.

Its CPU time is measured from after its imports, so the figure is what generating load costs.
"""
import asyncio
import json
import resource
import sys
import time

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def build(rows: int) -> bytes:
    """A serialized PredictRequest: 30 float features, ``rows`` values each (the demo model's input)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "demo", "predict_raw"
    rng = np.random.default_rng(0)
    for i in range(30):
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                                       tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=rows)]))
        proto.float_val.extend(rng.normal(size=rows).astype(np.float32).tolist())
        request.inputs[f"feature_{i}"].CopyFrom(proto)
    return request.SerializeToString()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(target: str, rows: int, concurrency: int, seconds: float) -> None:
    payload = predict_pb2.PredictRequest.FromString(build(rows))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        await stub.Predict(payload)
        latencies: list[float] = []
        failures = 0
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    await stub.Predict(payload, timeout=10)
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError:
                    failures += 1
        cpu_before = _cpu()
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = _cpu() - cpu_before
    lat = np.array(latencies) * 1000
    print(json.dumps({"requests": len(latencies), "failures": failures, "seconds": elapsed,
                      "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                      "loadgen_cpu_s": cpu}))


if __name__ == "__main__":  # grpc_load.py TARGET ROWS CONCURRENCY SECONDS
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
