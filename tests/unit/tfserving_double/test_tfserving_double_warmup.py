"""Reference §6: warmup records are replayed while a version loads; bad ones fail the load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def version_with_warmup(keras_versions, base: Path, records: int, inputs: dict | None = None) -> Path:
    """Version 1 of ``ranker`` under ``base`` with a warmup file written as the reference shows."""
    target = base / "1"
    shutil.copytree(keras_versions.base / "1", target)
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name="serving_default"))
    for name, value in (inputs or {"features": X}).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    (target / "assets.extra").mkdir()
    with tf.io.TFRecordWriter(str(target / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        for _ in range(records):
            writer.write(log.SerializeToString())
    return target


def failed_load(make_double, base: Path, **kwargs) -> tuple[str, str]:
    d = make_double(model_name="ranker", model_base_path=str(base), **kwargs).start(wait=False)
    assert not d.wait_ready(timeout=60)
    rec = d.manager.version_states("ranker")[1]
    assert rec.state == "END"
    return rec.error_code, rec.error_message


def test_warmup_records_are_replayed(make_double, keras_versions, base: Path) -> None:
    target = version_with_warmup(keras_versions, base, records=1000)  # the maximum is allowed
    d = make_double(model_name="ranker", model_base_path=str(base)).start(timeout=120)
    path = target / "assets.extra" / "tf_serving_warmup_requests"
    done = f"Finished reading warmup data for model at {path}. Number of warmup records read: 1000."
    assert any(done in line for line in d.logs)


def test_more_than_1000_records_fail_the_load(make_double, keras_versions, base: Path) -> None:
    target = version_with_warmup(keras_versions, base, records=1001)
    path = target / "assets.extra" / "tf_serving_warmup_requests"
    assert failed_load(make_double, base) == (
        "INVALID_ARGUMENT",
        f"Number of warmup records exceeds the maximum (1000) at {path}",
    )


def test_a_failing_warmup_request_fails_the_load(make_double, keras_versions, base: Path) -> None:
    version_with_warmup(keras_versions, base, records=1, inputs={"wrong": X})
    code, message = failed_load(make_double, base)
    assert code == "INVALID_ARGUMENT" and "Sent extra: {wrong}. Missing but required: {features}." in message


def test_corrupt_file_is_data_loss_unless_warmup_is_off(make_double, keras_versions, base: Path) -> None:
    target = version_with_warmup(keras_versions, base, records=1)
    (target / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"\x01\x02 not a TFRecord")
    code, message = failed_load(make_double, base)
    assert code == "DATA_LOSS" and message.endswith("Please verify your warmup data is in TFRecord format.")


def test_warmup_off_by_flag(make_double, keras_versions, base: Path) -> None:
    from tfserving_double import options_from_flags, parse_flags

    assert options_from_flags(parse_flags([])[0]).enable_model_warmup is True, "the real default"
    values, _, ok = parse_flags(["--enable_model_warmup=false", "--num_request_iterations_for_warmup=3"])
    off = options_from_flags(values)
    assert ok and (off.enable_model_warmup, off.num_request_iterations_for_warmup) == (False, 3)
    target = version_with_warmup(keras_versions, base, records=1)
    (target / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"corrupt")
    d = make_double(model_name="ranker", model_base_path=str(base))
    d.options.enable_model_warmup = False
    d.start(timeout=120)
    assert d.manager.version_states("ranker")[1].state == "AVAILABLE"
