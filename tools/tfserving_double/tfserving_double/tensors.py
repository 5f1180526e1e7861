"""Tensor values between JSON, numpy and ``TensorProto`` (shared by the REST and gRPC APIs).

JSON in: leaves already checked by ``json_tensors`` against the signature's dtype; strings become bytes,
``{"b64": ...}`` is decoded (§1.6). JSON out: float32 keeps its shortest float32 spelling, DT_STRING
outputs whose alias ends in ``_bytes`` become ``{"b64": ...}``, other strings are text.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from .errors import invalid

NUMPY_DTYPES: dict[str, Any] = {
    "float": np.float32, "double": np.float64, "half": np.float16, "int8": np.int8, "int16": np.int16,
    "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32,
    "uint64": np.uint64, "bool": np.bool_, "string": object,
}


def _to_bytes(leaf: Any) -> bytes:
    if isinstance(leaf, dict):  # {"b64": "..."}, checked by json_tensors
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except ValueError:
            raise invalid(f"Unable to base64 decode: {leaf['b64']}") from None
    return str(leaf).encode("utf-8")


def _map_leaves(value: Any, fn: Any) -> Any:
    return [_map_leaves(v, fn) for v in value] if isinstance(value, list) else fn(value)


def json_to_array(value: Any, dtype: str) -> np.ndarray:
    """A checked JSON value (scalar or dense nested list) as an array of the signature's dtype."""
    if dtype not in NUMPY_DTYPES:
        raise invalid(f"Conversion of JSON Value: {value} to type: {dtype} is not supported")
    if dtype == "string":
        return np.array(_map_leaves(value, _to_bytes), dtype=object)
    return np.asarray(value, dtype=NUMPY_DTYPES[dtype])


def _leaf_to_json(leaf: Any, as_b64: bool) -> Any:
    if isinstance(leaf, bytes):
        return {"b64": base64.b64encode(leaf).decode("ascii")} if as_b64 else leaf.decode("utf-8", "replace")
    if isinstance(leaf, (np.floating, float)):
        return leaf  # formatted by json_text with its own precision
    if isinstance(leaf, (np.bool_, bool)):
        return bool(leaf)
    if isinstance(leaf, (np.integer, int)):
        return int(leaf)
    return leaf


def array_to_json(array: Any, alias: str) -> Any:
    """An output array as JSON values; ``alias`` decides b64 for byte strings (``*_bytes``, §1.6)."""
    arr = np.asarray(array)
    as_b64 = alias.endswith("_bytes")

    def convert(a: Any) -> Any:
        if not isinstance(a, np.ndarray):  # an element of a 1-D object array
            return _leaf_to_json(a, as_b64)
        if a.ndim == 0:
            return _leaf_to_json(a[()], as_b64)
        return [convert(x) for x in a]

    return convert(arr)


def to_tensor_proto(array: Any) -> Any:
    """numpy -> TensorProto (gRPC responses)."""
    from .servable import tensorflow

    return tensorflow().make_tensor_proto(np.asarray(array))


def from_tensor_proto(proto: Any) -> np.ndarray:
    """TensorProto -> numpy (gRPC requests); a malformed proto is INVALID_ARGUMENT."""
    from .servable import tensorflow

    try:
        return tensorflow().make_ndarray(proto)
    except (TypeError, ValueError) as e:
        raise invalid(f"Cannot parse tensor: {e}") from None
