"""The gRPC ceiling: a bare ``grpc.aio`` PredictionService servicer, no model and no server code of ours.

grpc decodes the same PredictRequest; Predict answers a PredictResponse of the demo model's shape
(``probabilities``, float, ``[rows, 1]``), so what Esteira's gRPC Predict spends beyond it is our own
code and the model call.

    python benchmarks/serving/grpc_ceiling.py PORT
"""
from __future__ import annotations

import asyncio
import sys

import grpc
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class Ceiling(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        first = next(iter(request.inputs.values()))
        rows = first.tensor_shape.dim[0].size if first.tensor_shape.dim else 1
        response = predict_pb2.PredictResponse()
        response.model_spec.name, response.model_spec.signature_name = request.model_spec.name, "predict_raw"
        response.model_spec.version.value = 1
        response.outputs["probabilities"].CopyFrom(tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT, float_val=[0.5] * rows,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=rows),
                                                               tensor_shape_pb2.TensorShapeProto.Dim(size=1)])))
        return response


async def serve(port: int) -> None:
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Ceiling(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
