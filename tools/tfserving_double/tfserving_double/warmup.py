"""Model warmup (reference §6): replay ``assets.extra/tf_serving_warmup_requests`` while a version loads.

The file is a TFRecord of ``PredictionLog``s; each record runs ``iterations`` times on the just-loaded
session. More than 1000 records, a corrupt file or a failing request fails the load. ``session_run_log``
is UNIMPLEMENTED, as in the real server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from . import inference
from .errors import TFError, invalid
from .servable import Servable, tensorflow
from .tensors import from_tensor_proto

WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000

Log = Callable[[str, str, str], None]


def run_warmup(servable: Servable, iterations: int, log: Log) -> int:
    """Replay the version's warmup records; returns how many were read. Raises TFError to fail the load."""
    path = os.path.join(servable.path, WARMUP_PATH)
    if not os.path.isfile(path):
        log("I", "saved_model_warmup_util.cc", f"No warmup data file found at {path}")
        return 0
    from tensorflow_serving.apis import prediction_log_pb2

    tf = tensorflow()
    started, count = time.monotonic(), 0
    try:
        for raw in tf.compat.v1.io.tf_record_iterator(path):
            count += 1
            if count > MAX_RECORDS:
                raise invalid(f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
            record = prediction_log_pb2.PredictionLog.FromString(raw)
            for _ in range(max(iterations, 1)):
                _replay(servable, record)
    except TFError:
        raise
    except tf.errors.OpError as e:
        raise TFError("DATA_LOSS", f"{e.message} Please verify your warmup data is in TFRecord "
                                   f"format.") from None
    except Exception as e:  # noqa: BLE001 - e.g. a record that is not a PredictionLog
        raise TFError("DATA_LOSS", f"Failed to read warmup record {count} at {path}: {e}. Please verify your "
                                   f"warmup data is in TFRecord format.") from None
    elapsed = int((time.monotonic() - started) * 1e6)
    log("I", "saved_model_warmup_util.cc",
        f"Finished reading warmup data for model at {path}. Number of warmup records read: {count}. "
        f"Elapsed time (microseconds): {elapsed}.")
    return count


def _signature(servable: Servable, spec: Any) -> Any:
    name = spec.signature_name or "serving_default"
    sigs = servable.signatures.signature_def
    if name not in sigs:
        raise TFError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
    return sigs[name]


def _replay(servable: Servable, record: Any) -> None:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        request = record.predict_log.request
        inputs = {alias: from_tensor_proto(proto) for alias, proto in request.inputs.items()}
        inference.predict(servable, _signature(servable, request.model_spec), inputs,
                          list(request.output_filter))
    elif kind in ("classify_log", "regress_log"):
        request = getattr(record, kind).request
        run = inference.classify if kind == "classify_log" else inference.regress
        run(servable, _signature(servable, request.model_spec), inference.serialized_input(request.input))
    elif kind == "multi_inference_log":
        request = record.multi_inference_log.request
        examples = inference.serialized_input(request.input)
        for task in request.tasks:
            run = inference.classify if task.method_name == inference.CLASSIFY_METHOD else inference.regress
            run(servable, _signature(servable, task.model_spec), examples)
    else:
        raise TFError("UNIMPLEMENTED", f"Unsupported log_type for warmup: {kind}")

