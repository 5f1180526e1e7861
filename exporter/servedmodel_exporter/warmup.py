"""Write ``assets.extra/tf_serving_warmup_requests``: TF Serving runs them before serving a version.

The file is a TFRecord of ``tensorflow.serving.PredictionLog`` (predict_log) records. TF Serving refuses to
load a version whose warmup file has more than 1000 records or whose warmup requests fail, so the exporter
replays the written file through the staged model before publishing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from .errors import UsageError, VerificationError
from .models import Predict

WARMUP_FILE = "tf_serving_warmup_requests"
MAX_RECORDS = 1000


def write(assets_extra: Path, inputs: Mapping[str, np.ndarray], signature: str, records: int) -> Path:
    if not 1 <= records <= MAX_RECORDS:
        raise UsageError(f"--warmup must be between 1 and {MAX_RECORDS} (TF Serving's limit), got {records}")
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    record = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    ).SerializeToString()
    path = assets_extra / WARMUP_FILE
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(records):
            writer.write(record)
    return path


def read(path: Path) -> list[prediction_log_pb2.PredictionLog]:
    """The PredictionLog records of a warmup file."""
    logs = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        logs.append(prediction_log_pb2.PredictionLog.FromString(raw))
    return logs


def replay(path: Path, predict: Predict, signature: str, expected_records: int) -> None:
    """Check the file as TF Serving's loader will use it: count, signature name, a run of the request."""
    logs = read(path)
    if len(logs) != expected_records:
        raise VerificationError(f"{path} holds {len(logs)} records, expected {expected_records}")
    request = logs[0].predict_log.request
    if request.model_spec.signature_name != signature:
        raise VerificationError(
            f"{path} targets signature {request.model_spec.signature_name!r}, not {signature!r}"
        )
    predict({name: tf.make_ndarray(proto) for name, proto in request.inputs.items()})
