"""Closed-loop gRPC Predict load: N concurrent callers for D seconds; prints one JSON line of results."""
import asyncio
import json
import sys
import time

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def build(rows: int) -> bytes:
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
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    print(json.dumps({"requests": len(latencies), "failures": failures, "seconds": elapsed,
                      "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
