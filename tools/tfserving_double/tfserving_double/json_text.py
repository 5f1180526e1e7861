"""JSON text the way TF Serving writes and reads it: protobuf JSON, rapidjson layout and parse errors.

Reference §1.4/§1.5 (protobuf JSON options), §1.6 (WriteDecimal), §1.7 (error bodies, parse errors).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from google.protobuf import json_format

from .errors import invalid


def message_to_json(message: Any, *, preserve_names: bool) -> str:
    """MessageToJsonString with add_whitespace (1-space indent) and always_print_primitive_fields."""
    kwargs: dict[str, Any] = {"indent": 1, "preserving_proto_field_name": preserve_names,
                              "ensure_ascii": False}
    try:
        return json_format.MessageToJson(message, always_print_fields_with_no_presence=True, **kwargs)
    except TypeError:  # protobuf < 5.26 spells the option differently
        return json_format.MessageToJson(message, including_default_value_fields=True, **kwargs)


def rapidjson_pretty(value: Any, level: int = 0) -> str:
    """rapidjson PrettyWriter layout (4 spaces) used for error bodies and JSON values in messages."""
    pad, inner = "    " * level, "    " * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {rapidjson_pretty(v, level + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + rapidjson_pretty(v, level + 1) for v in value) + "\n" + pad + "]"
    if isinstance(value, (float, np.floating)):
        return _decimal(value)
    return json.dumps(value, ensure_ascii=False)


def _decimal(value: float) -> str:
    """WriteDecimal (§1.6): shortest round-trip, whole numbers get '.0', bare NaN/Infinity tokens."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if isinstance(value, np.floating) and not isinstance(value, np.float64):
        text = str(value)  # shortest spelling that round-trips in the value's own precision (float32)
        return text if any(c in text for c in ".en") else text + ".0"
    return repr(float(value))


def error_body(message: str) -> str:
    """MakeJsonFromStatus (§1.7): ``{\\n    "error": "<msg>"\\n}``, no trailing newline."""
    return "{\n    \"error\": " + json.dumps(message, ensure_ascii=False) + "\n}"


_RAPIDJSON_MESSAGES = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name enclosed in double quotes", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid control character", "Invalid encoding in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Extra data", "The document root must not be followed by other values."),
)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """ParseJson in json_tensor.cc: empty -> 'The document is empty'; syntax errors get rapidjson's English
    message and byte offset; a non-object top level -> 'Is not object'. NaN/Infinity are accepted."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    text = body.decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if not text.strip():
            raise invalid("JSON Parse error: The document is empty") from None
        msg = next((rj for py, rj in _RAPIDJSON_MESSAGES if e.msg.startswith(py)), None)
        if msg is None:
            msg = "Missing a comma or ']' after an array element." if "','" in e.msg else "Invalid value."
        offset = len(text[: e.pos].encode("utf-8"))
        raise invalid(f"JSON Parse error: {msg} at offset: {offset}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {rapidjson_pretty(doc)} Is not object")
    return doc

