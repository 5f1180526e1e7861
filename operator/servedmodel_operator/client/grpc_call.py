"""TF Serving's gRPC API (PredictionService.Predict, GetModelMetadata), straight to the Service's `grpc`
port. Only from where that port is reachable (a pod): the API server's service proxy forwards HTTP/1.1
requests and cannot carry gRPC (HTTP/2).

Needs `grpcio` and `tensorflow-serving-api` (its stubs import TensorFlow's protos); the REST path needs
neither.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import tensors
from .errors import ClientError, ModelServerError, NotReadyError
from .resolve import Target

NOT_READY_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def _stubs() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import grpc
        from tensorflow.core.framework import tensor_pb2, types_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc
    except ImportError as exc:
        raise ClientError(
            f"--grpc needs the packages grpcio and tensorflow-serving-api ({exc}); "
            "install them (pip install tensorflow-serving-api) or use REST (the default)"
        ) from exc
    return type(
        "Stubs",
        (),
        {
            "grpc": grpc,
            "tensor": tensor_pb2,
            "types": types_pb2,
            "metadata": get_model_metadata_pb2,
            "predict": predict_pb2,
            "service": prediction_service_pb2_grpc,
        },
    )


def _model_spec(spec: Any, target: Target, version: int | None, label: str | None, sig: str) -> None:
    spec.name = target.model
    spec.signature_name = sig
    if version is not None:
        spec.version.value = int(version)
    elif label:
        spec.version_label = label


def predict(
    target: Target,
    instances: Any,
    version: int | None = None,
    label: str | None = None,
    signature_name: str = "serving_default",
    timeout: float = 30.0,
    address: str | None = None,
) -> dict[str, np.ndarray]:
    s = _stubs()
    address = address or f"{target.host}:{target.grpc_port}"
    with s.grpc.insecure_channel(address) as channel:
        stub = s.service.PredictionServiceStub(channel)
        try:
            meta_req = s.metadata.GetModelMetadataRequest(metadata_field=["signature_def"])
            _model_spec(meta_req.model_spec, target, version, label, signature_name)
            meta = stub.GetModelMetadata(meta_req, timeout=timeout)
            sig_map = s.metadata.SignatureDefMap()
            meta.metadata["signature_def"].Unpack(sig_map)
            if signature_name not in sig_map.signature_def:
                raise ModelServerError(
                    f'Serving signature name: "{signature_name}" not found in signature def',
                    "INVALID_ARGUMENT",
                )
            sig = sig_map.signature_def[signature_name]
            request = s.predict.PredictRequest()
            _model_spec(request.model_spec, target, version, label, signature_name)
            try:
                inputs = tensors.instances_to_inputs(tensors.jsonable(instances), sorted(sig.inputs))
            except ValueError as exc:
                raise ModelServerError(str(exc), "INVALID_ARGUMENT") from exc
            for name, values in inputs.items():
                if name not in sig.inputs:
                    raise ModelServerError(
                        f"input {name!r} is not in the signature (it takes {sorted(sig.inputs)})",
                        "INVALID_ARGUMENT",
                    )
                dtype_name = s.types.DataType.Name(sig.inputs[name].dtype)
                try:
                    array = tensors.as_array(values, dtype_name)
                except ValueError as exc:
                    raise ModelServerError(f"input {name!r}: {exc}", "INVALID_ARGUMENT") from exc
                request.inputs[name].CopyFrom(
                    tensors.to_tensor_proto(array, dtype_name, s.tensor.TensorProto, sig.inputs[name].dtype)
                )
            response = stub.Predict(request, timeout=timeout)
        except s.grpc.RpcError as exc:
            code, details = exc.code().name, exc.details() or ""
            if code in NOT_READY_CODES:
                raise NotReadyError(
                    f'ServedModel "{target.name}" in namespace "{target.namespace}" is not reachable over '
                    f"gRPC at {address}: {code}: {details}"
                ) from exc
            raise ModelServerError(details or code, code) from exc
    return {
        name: tensors.from_tensor_proto(proto, s.types.DataType.Name(proto.dtype))
        for name, proto in sorted(response.outputs.items())
    }
