"""The gRPC port: ``PredictionService`` (Predict, Classify, Regress, GetModelMetadata) and
``ModelService.GetModelStatus``, with the generated stubs of ``tensorflow-serving-api`` (reference §1.9).

TF status codes are gRPC codes with the same numbers; messages over 1024 characters are cut and end in
``...TRUNCATED`` (§1.9). ``MultiInference`` and ``HandleReloadConfigRequest`` answer UNIMPLEMENTED (the
config is reloaded by polling the file, as the operator configures it).
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from . import fake_inference, inference
from .errors import TFError, invalid
from .json_tensors import dtype_name
from .manager import ModelManager
from .status_metadata import model_metadata, model_status
from .tensors import from_tensor_proto, to_tensor_proto

MAX_MESSAGE = 2**31 - 1  # SetMaxMessageSize(kint32max)
_MAX_ERROR = 1024


def _abort(context: grpc.ServicerContext, error: TFError) -> None:
    message = error.message
    if len(message) > _MAX_ERROR:
        message = message[:_MAX_ERROR] + "...TRUNCATED"
    context.abort(grpc.StatusCode[error.code], message)


def _spec(request: Any) -> tuple[str, int | None, str | None]:
    """ModelSpec -> (name, version, label); a request without one is INVALID_ARGUMENT."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    spec = request.model_spec
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    return spec.name, version, spec.version_label if choice == "version_label" else None


class _Handlers:
    """Turns TFError (and bugs) into gRPC statuses."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def _call(self, fn: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request)
        except TFError as e:
            _abort(context, e)
        except Exception as e:  # noqa: BLE001 - a bug in the double: INTERNAL, not a dropped call
            _abort(context, TFError("INTERNAL", f"{type(e).__name__}: {e}"))

    def _signature(self, request: Any) -> tuple[Any, Any, int, str]:
        name, version, label = _spec(request)
        chosen, rec = self.manager.resolve(name, version, label)
        sig_name = request.model_spec.signature_name or "serving_default"
        sigs = rec.servable.signatures.signature_def
        if sig_name not in sigs:
            raise TFError("FAILED_PRECONDITION", f'Serving signature key "{sig_name}" not found.')
        return rec.servable, sigs[sig_name], chosen, sig_name

    @staticmethod
    def _echo_spec(response: Any, request: Any, version: int, sig_name: str) -> None:
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = sig_name


class PredictionService(_Handlers, prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - gRPC names
        return self._call(self._predict, request, context)

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call(self._classify, request, context)

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call(self._regress, request, context)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call(self._metadata, request, context)

    def _predict(self, request: Any) -> Any:
        servable, sig, version, sig_name = self._signature(request)
        inference.check_input_aliases(sig, set(request.inputs))
        inputs = {}
        for i, (alias, proto) in enumerate(sorted(request.inputs.items())):
            want = sig.inputs[alias].dtype
            if proto.dtype != want:
                raise invalid(f"Expects arg[{i}] to be {dtype_name(want)} but {dtype_name(proto.dtype)} is "
                              f"provided")
            inputs[alias] = from_tensor_proto(proto)
        if servable.placeholder:
            outputs = fake_inference.fake_arrays(inputs, sig)
            if request.output_filter:
                outputs = {k: v for k, v in outputs.items() if k in request.output_filter}
        else:
            outputs = inference.predict(servable, sig, inputs, list(request.output_filter))
        response = predict_pb2.PredictResponse()
        self._echo_spec(response, request, version, sig_name)
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(to_tensor_proto(value))
        return response

    def _classify(self, request: Any) -> Any:
        servable, sig, version, sig_name = self._signature(request)
        if servable.placeholder:
            raise TFError("UNIMPLEMENTED", "Classify needs a real SavedModel (this version is a placeholder)")
        response = classification_pb2.ClassificationResponse()
        self._echo_spec(response, request, version, sig_name)
        for row in inference.classify(servable, sig, inference.serialized_input(request.input)):
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label, score=float(score))
        return response

    def _regress(self, request: Any) -> Any:
        servable, sig, version, sig_name = self._signature(request)
        if servable.placeholder:
            raise TFError("UNIMPLEMENTED", "Regress needs a real SavedModel (this version is a placeholder)")
        response = regression_pb2.RegressionResponse()
        self._echo_spec(response, request, version, sig_name)
        for value in inference.regress(servable, sig, inference.serialized_input(request.input)):
            response.result.regressions.add(value=float(np.float32(value)))
        return response

    def _metadata(self, request: Any) -> Any:
        name, version, label = _spec(request)
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid(f"Metadata field {field} is not supported")
        return model_metadata(self.manager, name, version, label)


class ModelService(_Handlers, model_service_pb2_grpc.ModelServiceServicer):
    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._call(self._status, request, context)

    def _status(self, request: Any) -> Any:
        name, version, _ = _spec(request)  # a label is not resolved (§1.4)
        return model_status(self.manager, name, version)


def start_grpc_server(manager: ModelManager, port: int, socket_path: str, bind_address: str,
                      max_threads: int = 16) -> grpc.Server:
    """Build and start the server on ``bind_address:port`` (and ``unix:socket_path``); a port that cannot
    be bound fails start-up like the real server's BuildAndStart."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="tfserving-double-grpc"),
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_MESSAGE),
                 ("grpc.max_send_message_length", MAX_MESSAGE)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    host = f"[{bind_address}]" if ":" in bind_address else bind_address
    addresses = ([f"{host}:{port}"] if port else []) + ([f"unix:{socket_path}"] if socket_path else [])
    for address in addresses:
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            server.stop(None)
            raise invalid("Failed to BuildAndStart gRPC server")
    server.start()
    return server
