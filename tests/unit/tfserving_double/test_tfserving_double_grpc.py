"""The gRPC port (§1.9), called the way gRPC clients call TF Serving: tensorflow-serving-api's stubs.

Answers are compared with Keras (``ranker``) and with plain math (``examples``); errors carry TF's codes.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tfsd_helpers import add_version
from tfserving_double import TFServingDouble

X = np.array([[0.1, -1.5, 2.0, 3.25], [1.0, 0.0, -0.5, 0.75]], dtype=np.float32)
TOL = 1e-5


@pytest.fixture(scope="module")
def channel(tf_double: TFServingDouble) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{tf_double.grpc_port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def predictions(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(model: str, version: int | None = None, label: str | None = None, **inputs: np.ndarray):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


@pytest.mark.parametrize("version,label,expected", [(None, None, 2), (1, None, 1), (None, "stable", 1)])
def test_predict_matches_keras(predictions, keras_versions, version, label, expected) -> None:
    response = predictions.Predict(predict_request("ranker", version, label, features=X), timeout=30)
    assert response.model_spec.name == "ranker" and response.model_spec.version.value == expected
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"probs", "score"}
    want = keras_versions.expected(expected, X)
    for name in ("probs", "score"):
        got = tf.make_ndarray(response.outputs[name])
        assert got.dtype == np.float32 and got.shape == want[name].shape
        np.testing.assert_allclose(got, want[name], atol=TOL)


def test_output_filter(predictions, keras_versions) -> None:
    request = predict_request("ranker", features=X)
    request.output_filter.append("score")
    response = predictions.Predict(request, timeout=30)
    assert list(response.outputs) == ["score"]
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["score"]), keras_versions.expected(2, X)["score"], atol=TOL
    )


def test_predict_errors_carry_tf_codes(predictions) -> None:
    cases = [
        (
            predict_request("nope", features=X),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
        (
            predict_request("ranker", version=7, features=X),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(ranker, 7)",
        ),
        (
            predict_request("ranker", label="canary", features=X),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: canary",
        ),
        (
            predict_request("ranker", features=np.array([["a", "b", "c", "d"]])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but string is provided",
        ),
        (
            predict_request("ranker", other=X),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 1!=1 len({features}). Sent extra: {other}. "
            "Missing but required: {features}.",
        ),
    ]
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            predictions.Predict(request, timeout=30)
        assert (err.value.code(), err.value.details()) == (code, message)
    request = predict_request("ranker", features=X)
    request.model_spec.signature_name = "nope"
    with pytest.raises(grpc.RpcError) as err:
        predictions.Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_strings_round_trip(predictions) -> None:
    response = predictions.Predict(predict_request("examples", text=np.array([b"abc", b"\xff"])), timeout=30)
    assert list(tf.make_ndarray(response.outputs["upper"])) == [b"ABC", b"\xff"]
    assert list(tf.make_ndarray(response.outputs["raw_bytes"])) == [b"abc!", b"\xff!"]
    assert list(tf.make_ndarray(response.outputs["length"])) == [3, 1]


def _examples(request, xs: list[float]) -> None:
    for x in xs:
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)


def test_classify_and_regress(predictions) -> None:
    xs = [0.5, -2.0]
    reg = regression_pb2.RegressionRequest()
    reg.model_spec.name, reg.model_spec.signature_name = "examples", "regress"
    _examples(reg, xs)
    values = [r.value for r in predictions.Regress(reg, timeout=30).result.regressions]
    np.testing.assert_allclose(values, [0.5 * x + 2 for x in xs], atol=TOL)
    cls = classification_pb2.ClassificationRequest()
    cls.model_spec.name, cls.model_spec.signature_name = "examples", "classify"
    _examples(cls, xs)
    result = predictions.Classify(cls, timeout=30).result
    for x, classes in zip(xs, result.classifications, strict=True):
        p = 1 / (1 + np.exp(-x))
        assert [c.label for c in classes.classes] == ["pos", "neg"]
        np.testing.assert_allclose([c.score for c in classes.classes], [p, 1 - p], atol=TOL)


def test_model_metadata(predictions) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "ranker"
    request.model_spec.version.value = 1
    request.metadata_field.append("signature_def")
    response = predictions.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    sdm = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sdm)
    sig = sdm.signature_def["serving_default"]
    assert set(sig.inputs) == {"features"} and set(sig.outputs) == {"probs", "score"}
    request.ClearField("metadata_field")
    with pytest.raises(grpc.RpcError) as err:
        predictions.GetModelMetadata(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_model_status(channel) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "ranker"
    response = stub.GetModelStatus(request, timeout=30)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    states = [(s.version, state_name(s.state)) for s in response.model_version_status]
    assert states == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    assert all(s.status.error_code == 0 for s in response.model_version_status)
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as err:
        stub.GetModelStatus(request, timeout=30)
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )


def test_placeholder_versions_answer_half_plus_two(shared) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{shared.grpc_port}") as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        request = predict_request("m", x=np.array([[1.0], [6.0]], dtype=np.float32))
        response = stub.Predict(request, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [[2.5], [5.0]])


def test_grpc_socket_path_serves_the_same_api(make_double, base, tmp_path) -> None:
    add_version(base, 4)
    socket_path = tmp_path / "grpc.sock"
    make_double(model_name="m", model_base_path=str(base), grpc_socket_path=str(socket_path)).start()
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "m"
    with grpc.insecure_channel(f"unix:{socket_path}") as ch:
        response = model_service_pb2_grpc.ModelServiceStub(ch).GetModelStatus(request, timeout=30)
    assert [s.version for s in response.model_version_status] == [4]
