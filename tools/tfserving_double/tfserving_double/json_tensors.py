"""The JSON bodies of :predict, :classify and :regress: request checks and response shapes (§1.6, §1.7).

Order and messages follow ``json_tensor.cc``. Values are checked here; running them is ``inference``'s job.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import TFError, invalid
from .json_text import rapidjson_pretty
from .protos import api_pb2

FLOAT32_MAX = 3.4028234663852886e38
_INT_TYPES = {"int32", "int16", "int8", "uint8", "int64", "uint32", "uint64"}


def dtype_name(dtype: int) -> str:
    """DataTypeString: DT_FLOAT -> 'float'."""
    return api_pb2().types.DataType.Name(dtype)[3:].lower()


def _type_error(val: Any, dtype: str) -> TFError:
    kind = {dict: "Object", list: "Array", str: "String", bool: "True" if val is True else "False",
            type(None): "Null"}.get(type(val), "Number")
    return invalid(f"JSON Value: {rapidjson_pretty(val)} Type: {kind} is not of expected type: {dtype}")


def _check_leaf(val: Any, dtype: str) -> None:
    """AddValueToTensor's type checks for the common dtypes."""
    if isinstance(val, dict):
        if dtype == "string" and set(val) == {"b64"} and isinstance(val["b64"], str):
            return
        raise _type_error(val, dtype)
    is_number = isinstance(val, (int, float)) and not isinstance(val, bool)
    if dtype in ("float", "double"):
        if not is_number:
            raise _type_error(val, dtype)
        limit = 2**24 - 1 if dtype == "float" else 2**53 - 1
        too_big = (dtype == "float" and isinstance(val, float) and math.isfinite(val)
                   and abs(val) > FLOAT32_MAX)
        if (isinstance(val, int) and abs(val) > limit) or too_big:
            raise invalid(f"Cannot convert JSON value: {val} to {dtype} without loss of precision.")
    elif dtype in _INT_TYPES and not (isinstance(val, int) and not isinstance(val, bool)):
        raise _type_error(val, dtype)
    elif dtype == "string" and not isinstance(val, str):
        raise _type_error(val, dtype)
    elif dtype == "bool" and not isinstance(val, bool):
        raise _type_error(val, dtype)


def _dense_shape(val: Any) -> list[int]:
    shape = []
    while isinstance(val, list):
        shape.append(len(val))
        if not val:
            break
        val = val[0]
    return shape


def _fill(val: Any, level: int, shape: list[int], dtype: str) -> int:
    """FillTensorProto: leaves at depth == rank, lists of the expected size; returns the value count."""
    if not isinstance(val, list):
        if level != len(shape):
            raise invalid(f"JSON Value: {rapidjson_pretty(val)} found at incorrect level: {level + 1} "
                           f"in the JSON DOM. Expected at level: {len(shape)}")
        _check_leaf(val, dtype)
        return 1
    if level >= len(shape):
        raise invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(val) != shape[level]:
        raise invalid(f"Encountered list at unexpected size: {len(val)} at level: {level} expected size: "
                       f"{shape[level]}")
    return sum(_fill(v, level + 1, shape, dtype) for v in val)


def _check_tensor(val: Any, dtype: str) -> tuple[list[int], int]:
    shape = _dense_shape(val)
    return shape, _fill(val, 0, shape, dtype)


def predict_inputs(doc: dict[str, Any], sig: Any) -> tuple[str, dict[str, Any]]:
    """FillPredictRequestFromJson after the signature lookup: ('row'|'columnar', inputs by name)."""
    infos = dict(sorted(sig.inputs.items()))
    if not infos:
        raise invalid("Failed to get input map for signature: DEFAULT")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid(f"JSON Value: {rapidjson_pretty(doc)} Not formatted correctly expecting only one of "
                       f"'inputs' or 'instances' keys to exist ")
    if has_instances:
        return "row", _row_inputs(doc, infos)
    if has_inputs:
        return "columnar", _columnar_inputs(doc["inputs"], infos)
    raise invalid("Missing 'inputs' or 'instances' key")


def is_object(val: Any) -> bool:
    return isinstance(val, dict) and not (set(val) == {"b64"} and isinstance(val["b64"], str))


def _row_inputs(doc: dict[str, Any], infos: dict[str, Any]) -> dict[str, Any]:
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise invalid(f"JSON Value: {rapidjson_pretty(doc)} Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid(f"JSON Value: {rapidjson_pretty(doc)} No values in 'instances' array")
    objects = is_object(instances[0])
    if not objects and len(infos) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                       "required as per tensorinfo_map")
    columns: dict[str, list[Any]] = {n: [] for n in infos}
    first_shape: dict[str, list[int]] = {}
    for i, item in enumerate(instances):
        if objects != is_object(item):
            what = "object but got list" if objects else "value/list but got object"
            raise invalid(f"Expecting {what} at item {i} of input list")
        pairs = item.items() if objects else [(next(iter(infos)), item)]
        for name, value in pairs:
            try:
                if name not in infos:
                    raise invalid(f"JSON object: does not have named input: {name}")
                shape, _ = _check_tensor(value, dtype_name(infos[name].dtype))
                if name in first_shape and first_shape[name] != shape:
                    raise invalid(f"Expecting shape [{','.join(map(str, first_shape[name]))}] but got: "
                                   f"[{','.join(map(str, shape))}]")
                first_shape.setdefault(name, shape)
            except TFError as e:
                where = f"{i} key: {name}" if objects else f"{i}"
                raise invalid(f"Failed to process element: {where} of 'instances' list. "
                               f"Error: {e}") from None
            columns[name].append(value)
        if objects and set(item) != set(infos):
            raise invalid(f"Failed to process element: {i} of 'instances' list. JSON object: "
                           f"{rapidjson_pretty(item)} keys must be equal to: {','.join(infos)}")
    return columns


def _columnar_inputs(val: Any, infos: dict[str, Any]) -> dict[str, Any]:
    if not is_object(val):
        if len(infos) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as multiple input tensors "
                           "required as per tensorinfo_map")
        name = next(iter(infos))
        _check_tensor(val, dtype_name(infos[name].dtype))
        return {name: val}
    out = {}
    for name, info in infos.items():
        if name not in val:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        _check_tensor(val[name], dtype_name(info.dtype))
        out[name] = val[name]
    return out


def examples_from_json(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """FillClassifyRegressRequestFromJson: optional 'context', required non-empty 'examples' of objects."""
    if "context" in doc:
        _check_example(doc["context"])
    if "examples" not in doc:
        raise invalid(f"JSON Value: {rapidjson_pretty(doc)} When method is classify, key 'examples' is "
                       f"expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise invalid(f"JSON Value: {rapidjson_pretty(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid(f"JSON Value: {rapidjson_pretty(doc)} 'examples' value is an empty array")
    for ex in examples:
        _check_example(ex)
    return examples


def _check_example(val: Any) -> None:
    """MakeExampleFromJsonObject: objects of features, each a value or a flat list of one kind."""
    kinds = {dict: "Object", list: "Array", str: "String", type(None): "Null", bool: "True"}
    if not isinstance(val, dict):
        raise invalid(f"Example must be JSON object but got JSON {kinds.get(type(val), 'Number')}")
    for name, content in val.items():
        kind = None
        for item in content if isinstance(content, list) else [content]:
            if item is None or isinstance(item, list) or is_object(item):
                t = "Null" if item is None else "Array" if isinstance(item, list) else "Object"
                raise invalid(f"Feature: {name} has element with unexpected JSON type: {t}")
            this = ("int64" if isinstance(item, (bool, int)) else "float" if isinstance(item, float)
                    else "bytes")
            if kind not in (None, this):
                raise invalid(f"Unexpected element type in feature: {name} expecting type: {kind}")
            kind = this




def predict_response(fmt: str, outputs: dict[str, Any]) -> str:
    """MakeRowFormatJsonFromTensors / MakeColumnarFormatJsonFromTensors (§1.6) from output arrays.

    Row: ``{"predictions": [...]}``, one item per batch row, objects keyed by output alias when there are
    several outputs (all must share the batch size). Columnar: ``{"outputs": value-or-object}``.
    """
    import numpy as np

    from .tensors import array_to_json

    names = sorted(outputs)
    if fmt == "columnar":
        values = {n: array_to_json(outputs[n], n) for n in names}
        return rapidjson_pretty({"outputs": values[names[0]] if len(names) == 1 else values})
    batch = 0
    for n in names:
        shape = np.shape(outputs[n])
        if not shape:
            raise invalid(f"Tensor name: {n} has no shape information ")
        if shape[0] < 1:
            raise invalid(f"Tensor name: {n} has invalid batch size: {shape[0]}")
        if batch and shape[0] != batch:
            raise invalid(f"Tensor name: {n} has inconsistent batch size: {shape[0]} expecting: {batch}")
        batch = shape[0]
    columns = {n: array_to_json(outputs[n], n) for n in names}
    if len(names) == 1:
        return rapidjson_pretty({"predictions": columns[names[0]]})
    return rapidjson_pretty({"predictions": [{n: columns[n][i] for n in names} for i in range(batch)]})


def _feature(example: Any, name: str, content: Any) -> None:
    """One JSON feature into a tf.Example: ints -> int64_list, floats -> float_list, else bytes_list."""
    import base64

    items = content if isinstance(content, list) else [content]
    feature = example.features.feature[name]
    if items and isinstance(items[0], (bool, int)):
        feature.int64_list.value.extend(int(v) for v in items)
    elif items and isinstance(items[0], float):
        feature.float_list.value.extend(items)
    else:
        feature.bytes_list.value.extend(
            base64.b64decode(v["b64"]) if isinstance(v, dict) else str(v).encode("utf-8") for v in items)


def serialized_examples(doc: dict[str, Any], examples: list[dict[str, Any]]) -> list[bytes]:
    """The 'examples' (with 'context' features merged into each, example features winning) as serialized
    tf.Example protos, the classify/regress signature's input."""
    from tensorflow.core.example import example_pb2

    out = []
    for ex in examples:
        proto = example_pb2.Example()
        for name, content in {**doc.get("context", {}), **ex}.items():
            _feature(proto, name, content)
        out.append(proto.SerializeToString())
    return out
