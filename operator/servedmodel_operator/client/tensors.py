"""Tensors between the forms TF Serving speaks and NumPy: JSON rows (REST), TensorProto (gRPC), and the
signature's dtypes (`DT_FLOAT`, ...) read from the model's metadata. No TensorFlow import: a laptop with
NumPy can call a model."""

from __future__ import annotations

from typing import Any

import numpy as np

# TF's DataType names (tensorflow/core/framework/types.proto) -> NumPy, for the dtypes models serve.
DTYPES: dict[str, Any] = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_HALF": np.float16,
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT8": np.uint8,
    "DT_UINT16": np.uint16,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_,
    "DT_STRING": np.object_,
}
# The TensorProto field that holds each dtype's values when tensor_content is empty.
VALUE_FIELDS = {
    "DT_FLOAT": "float_val",
    "DT_DOUBLE": "double_val",
    "DT_HALF": "half_val",
    "DT_INT8": "int_val",
    "DT_INT16": "int_val",
    "DT_INT32": "int_val",
    "DT_UINT8": "int_val",
    "DT_UINT16": "int_val",
    "DT_INT64": "int64_val",
    "DT_UINT32": "uint32_val",
    "DT_UINT64": "uint64_val",
    "DT_BOOL": "bool_val",
    "DT_STRING": "string_val",
}


def jsonable(value: Any) -> Any:
    """Instances as JSON values: NumPy arrays and scalars become lists and numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def as_array(values: Any, dtype_name: str | None) -> np.ndarray:
    """JSON values as an array of the signature's dtype (JSON numbers alone would give float64)."""
    dtype = DTYPES.get(dtype_name or "")
    if dtype is np.object_:
        return np.asarray(values, dtype=object)
    return np.asarray(values, dtype=dtype) if dtype is not None else np.asarray(values)


def rows_to_outputs(predictions: list[Any], output_names: list[str]) -> dict[str, list[Any]]:
    """REST row-format `predictions` by output name: a list of {name: value} rows for several outputs, a
    list of values for one (whose name then comes from the signature)."""
    if predictions and all(isinstance(row, dict) for row in predictions):
        names = list(predictions[0])
        return {name: [row[name] for row in predictions] for name in names}
    if len(output_names) != 1:
        raise ValueError(f"one output expected in the signature, found {output_names}")
    return {output_names[0]: predictions}


def instances_to_inputs(instances: Any, input_names: list[str]) -> dict[str, list[Any]]:
    """Row-format instances by input name, as TF Serving's REST API reads them (a list of {name: value}
    objects for several inputs, a list of values for one)."""
    if not isinstance(instances, list) or not instances:
        raise ValueError('"instances" must be a non-empty list')
    if all(isinstance(row, dict) for row in instances):
        names = list(instances[0])
        missing = [n for n in input_names if n not in names]
        if missing:
            raise ValueError(f"instances lack the inputs {missing} of the signature (it takes {input_names})")
        return {name: [row[name] for row in instances] for name in names}
    if len(input_names) != 1:
        raise ValueError(
            f"the signature takes several inputs {input_names}: give each instance as an object "
            '{"<input>": value, ...}'
        )
    return {input_names[0]: instances}


def to_tensor_proto(array: np.ndarray, dtype_name: str, tensor_proto_cls: Any, dtype_enum: int) -> Any:
    """A TensorProto of `array` cast to the signature's dtype (bytes in tensor_content; strings in
    string_val)."""
    proto = tensor_proto_cls(dtype=dtype_enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if dtype_name == "DT_STRING":
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
    else:
        proto.tensor_content = np.ascontiguousarray(
            array, dtype=np.dtype(DTYPES[dtype_name]).newbyteorder("<")
        ).tobytes()
    return proto


def from_tensor_proto(proto: Any, dtype_name: str) -> np.ndarray:
    """A TensorProto as a NumPy array (what tf.make_ndarray does, for the dtypes in DTYPES)."""
    if dtype_name not in DTYPES:
        raise ValueError(f"the client cannot read tensors of dtype {dtype_name}")
    shape = [d.size for d in proto.tensor_shape.dim]
    count = int(np.prod(shape)) if shape else 1
    dtype = DTYPES[dtype_name]
    if proto.tensor_content:
        return (
            np.frombuffer(proto.tensor_content, dtype=np.dtype(dtype).newbyteorder("<"))
            .astype(dtype)
            .reshape(shape)
        )
    values = list(getattr(proto, VALUE_FIELDS[dtype_name]))
    if dtype_name == "DT_HALF":
        array = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        array = np.asarray(values, dtype=dtype)
    if array.size == count:
        return array.reshape(shape)
    if array.size == 1:  # TF repeats a single value to fill the shape
        return np.full(shape, array.reshape(-1)[0], dtype=dtype)
    if array.size == 0:
        return np.zeros(shape, dtype=dtype)
    raise ValueError(f"a tensor of shape {shape} holds {array.size} values")
