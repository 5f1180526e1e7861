"""Protos: the config protos import no TensorFlow; the API protos do (§4.5), so they load lazily, once.

MonitoringConfig and BatchingParameters are not shipped in tensorflow-serving-api, so they are built here.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from google.protobuf import text_format

from .errors import invalid


@functools.cache
def config_pb2() -> Any:
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2


@functools.cache
def api_pb2() -> Any:
    """GetModelStatus/GetModelMetadata protos plus the TF protos they need (imports TensorFlow, ~4 s)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    return type("Apis", (), {
        "status": get_model_status_pb2, "metadata": get_model_metadata_pb2, "meta_graph": meta_graph_pb2,
        "saved_model": saved_model_pb2, "types": types_pb2,
    })


@functools.cache
def local_message_classes() -> dict[str, Any]:
    """MonitoringConfig and BatchingParameters: not shipped in tensorflow-serving-api (§4.5), so built here.

    Field names follow §4.3/§4.4; text format only uses names, so the numbers of the two newer batching fields
    (UNCONFIRMED upstream) do not matter.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tfserving_double/local_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    fd = descriptor_pb2.FieldDescriptorProto
    prom = fdp.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=fd.TYPE_BOOL, label=fd.LABEL_OPTIONAL)
    prom.field.add(name="path", number=2, type=fd.TYPE_STRING, label=fd.LABEL_OPTIONAL)
    mon = fdp.message_type.add(name="MonitoringConfig")
    mon.field.add(name="prometheus_config", number=1, type=fd.TYPE_MESSAGE, label=fd.LABEL_OPTIONAL,
                  type_name=".tensorflow.serving.PrometheusConfig")
    bp = fdp.message_type.add(name="BatchingParameters")
    wrapped = [("max_batch_size", 1, "Int64Value"), ("batch_timeout_micros", 2, "Int64Value"),
               ("max_enqueued_batches", 3, "Int64Value"), ("num_batch_threads", 4, "Int64Value"),
               ("thread_pool_name", 5, "StringValue"), ("enable_large_batch_splitting", 8, "BoolValue"),
               ("max_execution_batch_size", 9, "Int64Value")]
    for name, number, wrapper in wrapped:
        bp.field.add(name=name, number=number, type=fd.TYPE_MESSAGE, label=fd.LABEL_OPTIONAL,
                     type_name=f".google.protobuf.{wrapper}")
    bp.field.add(name="allowed_batch_sizes", number=6, type=fd.TYPE_INT64, label=fd.LABEL_REPEATED)
    bp.field.add(name="pad_variable_length_inputs", number=7, type=fd.TYPE_BOOL, label=fd.LABEL_OPTIONAL)
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))
            for n in ("MonitoringConfig", "BatchingParameters")}


def parse_proto_text_file(path: str, message: Any) -> Any:
    """ParseProtoTextFile (§4): any read or parse failure is ``Invalid protobuf file: '<file>'``."""
    try:
        with open(path, encoding="utf-8") as f:
            text_format.Parse(f.read(), message)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
        raise invalid(f"Invalid protobuf file: '{path}'") from e
    return message

