"""Answers for placeholder versions (a ``saved_model.pb`` with no graph, as tests write): no model runs.

Deterministic half_plus_two: every number ``v`` of the first input becomes ``0.5 * v + 2``; strings and
bools are echoed; every output of the signature gets that value.
"""

from __future__ import annotations

import base64
from typing import Any

from .json_tensors import dtype_name
from .json_text import rapidjson_pretty


def _fake(val: Any) -> Any:
    if isinstance(val, list):
        return [_fake(v) for v in val]
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        return 0.5 * val + 2.0
    return val


def _fake_outputs(inputs: dict[str, Any], sig: Any) -> dict[str, Any]:
    """Every output = the fake of the first input (sorted by name); ``*_bytes`` string outputs as b64."""
    first = inputs[sorted(inputs)[0]]
    out = {}
    for name, info in sorted(sig.outputs.items()):
        value = _fake(first)
        if name.endswith("_bytes") and dtype_name(info.dtype) == "string":
            value = _b64_all(value)
        out[name] = value
    return out


def _b64_all(val: Any) -> Any:
    if isinstance(val, list):
        return [_b64_all(v) for v in val]
    raw = val.get("b64", "") if isinstance(val, dict) else str(val)
    return {"b64": raw if isinstance(val, dict) else base64.b64encode(raw.encode()).decode()}


def predict_body(fmt: str, inputs: dict[str, Any], sig: Any) -> str:
    """MakeRowFormatJsonFromTensors / MakeColumnarFormatJsonFromTensors shapes, with fake values."""
    outputs = _fake_outputs(inputs, sig)
    if fmt == "columnar":
        value: Any = next(iter(outputs.values())) if len(outputs) == 1 else outputs
        return rapidjson_pretty({"outputs": value})
    batch = len(next(iter(outputs.values()))) if outputs else 0
    if len(outputs) == 1:
        rows: list[Any] = next(iter(outputs.values()))
    else:
        rows = [{k: v[i] for k, v in outputs.items()} for i in range(batch)]
    return rapidjson_pretty({"predictions": rows})


def fake_score(example: dict[str, Any]) -> float:
    x = example.get("x")
    x = x[0] if isinstance(x, list) and x else x
    return 0.5 * x + 2.0 if isinstance(x, (int, float)) and not isinstance(x, bool) else 2.0




def fake_arrays(inputs: dict[str, Any], sig: Any) -> dict[str, Any]:
    """The same fake for gRPC: arrays in, arrays out (numbers -> float32 half_plus_two, others echoed)."""
    import numpy as np

    first = np.asarray(inputs[sorted(inputs)[0]])
    value = (0.5 * first.astype(np.float32) + 2).astype(np.float32) if first.dtype.kind in "iuf" else first
    return {name: value for name in sorted(sig.outputs)}
