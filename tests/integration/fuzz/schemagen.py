"""Hypothesis strategies derived from the CRD's OpenAPI schema: well-typed specs, and the same specs
broken in one place (wrong type, out of range, bad pattern or enum, too long, unknown field).

Only the schema is read, so a field added to the CRD is fuzzed without touching this file. Bounded on
purpose: at most 3 list items and map entries, and strings short unless a minimum asks otherwise.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml
from hypothesis import strategies as st

INT32 = 2**31 - 1
# Patterns hypothesis could generate from, but which are cheaper as a few real-world values.
QUANTITIES = ["1", "500m", "2Gi", "0.5", "128Mi", "1e3", "3"]


def load_spec_schema(crd_path) -> dict[str, Any]:
    crd = yaml.safe_load(open(crd_path))
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if "enum" in schema:
        return st.sampled_from([e for e in schema["enum"]])
    lo, hi = schema.get("minLength", 0), min(schema.get("maxLength", 24), 24)
    if "pattern" in schema:
        if "KMGTPE" in schema["pattern"]:
            return st.sampled_from(QUANTITIES)
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda s: max(lo, 1) <= len(s) <= schema.get("maxLength", 10**6) and len(s) <= 64
        )
    return st.text(
        st.characters(codec="ascii", categories=("L", "N", "Pd")),
        min_size=max(lo, 1) if lo else 0,
        max_size=max(hi, lo),
    )


def _integer(schema: dict[str, Any]) -> st.SearchStrategy[int]:
    lo = schema.get("minimum", -INT32 if schema.get("format") == "int32" else -(2**40))
    hi = schema.get("maximum", INT32 if schema.get("format") == "int32" else 2**40)
    # Mostly small values near the lower bound; sometimes anywhere in range.
    return st.one_of(st.integers(lo, min(hi, lo + 4)), st.integers(lo, hi))


def valid(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A value the schema's types, bounds, patterns and enums accept (CEL rules may still reject it)."""
    if "anyOf" in schema or schema.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(0, 64), st.sampled_from(QUANTITIES))
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties")
        if props:
            required = set(schema.get("required", []))

            @st.composite
            def obj(draw):
                out = {}
                for name, sub in props.items():
                    if name in required or (depth < 3 and draw(st.integers(0, 3)) == 0):
                        out[name] = draw(valid(sub, depth + 1))
                return out

            return obj()
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
            return st.dictionaries(keys, valid(extra, depth + 1), max_size=3)
        return st.just({})  # free-form (x-kubernetes-preserve-unknown-fields)
    if kind == "array":
        items = schema.get("items", {})
        lo, hi = schema.get("minItems", 0), min(schema.get("maxItems", 3), 3)
        keys = schema.get("x-kubernetes-list-map-keys")
        unique = schema.get("x-kubernetes-list-type") == "set"
        if keys:
            return st.lists(
                valid(items, depth + 1),
                min_size=lo,
                max_size=hi,
                unique_by=lambda x: tuple(str(x.get(k)) for k in keys),
            )
        return st.lists(valid(items, depth + 1), min_size=lo, max_size=hi, unique=unique)
    if kind == "integer":
        return _integer(schema)
    if kind == "string":
        return _string(schema)
    if kind == "boolean":
        return st.booleans()
    return st.none()


def _paths(schema: dict[str, Any], value: Any, path: tuple = ()) -> list[tuple[tuple, dict[str, Any]]]:
    """Every (path, sub-schema) inside `value` that the schema describes, the root included."""
    found = [(path, schema)]
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                found += _paths(sub_schema, sub, path + (key,))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += _paths(schema["items"], item, path + (i,))
    return found


def _breakages(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """Values that break `schema`, each with the kind of breakage."""
    out: list[tuple[str, Any]] = []
    kind = schema.get("type")
    if "anyOf" in schema or schema.get("x-kubernetes-int-or-string"):
        return [("bad pattern", "lots"), ("wrong type", [1]), ("wrong type", {"a": 1})]
    wrong = {
        "object": ["a string", 7, [1]],
        "array": ["a string", {"a": 1}],
        "integer": ["12", 1.5, True],
        "string": [42, {"a": "b"}, ["x"]],
        "boolean": ["yes", 1],
    }
    out += [("wrong type", v) for v in wrong.get(kind, [])]
    if kind == "integer":
        if "minimum" in schema:
            out.append(("out of range", schema["minimum"] - 1))
        if "maximum" in schema:
            out.append(("out of range", schema["maximum"] + 1))
        if schema.get("format") == "int32":
            out.append(("out of range", 2**31))
    if kind == "string":
        if "enum" in schema:
            out.append(("not in enum", "Sometimes"))
        if "pattern" in schema:
            out += [("bad pattern", "Has Spaces & UPPER!"), ("bad pattern", "../../etc/passwd")]
        if "maxLength" in schema:
            out.append(("too long", "a" * (schema["maxLength"] + 1)))
        if schema.get("minLength", 0) > 0:
            out.append(("too short", ""))
    if kind == "array":
        if "maxItems" in schema and schema["maxItems"] <= 128:
            item = schema.get("items", {})
            filler = (
                [f"--x{i}" for i in range(schema["maxItems"] + 1)]
                if item.get("type") == "string"
                else list(range(1, schema["maxItems"] + 2))
            )
            out.append(("too many items", filler))
        if schema.get("minItems", 0) > 0:
            out.append(("too few items", []))
    if kind == "object" and schema.get("properties"):
        # The API server prunes unknown fields of structural objects. Free-form objects (affinity,
        # valueFrom, export.resources) keep them and Kubernetes then fails to parse the child: that known
        # operator bug is pinned by test_unparseable_free_form_fields_are_reported, not fuzzed.
        out.append(("unknown field", {"surprise": {"nested": [1, 2]}}))
        if "maxProperties" in schema:
            out.append(("too many properties", {f"k{i}": 1 for i in range(schema["maxProperties"] + 1)}))
    return out


@st.composite
def broken(draw, schema: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(kind of breakage, where, spec): a well-typed spec with one value replaced by a breaking one, or an
    unknown field added."""
    spec = draw(valid(schema))
    candidates = [(p, s, b) for p, s in _paths(schema, spec) for b in _breakages(s)]
    path, _, (what, bad) = draw(st.sampled_from(candidates))
    spec = copy.deepcopy(spec)
    if what == "unknown field":
        target = spec
        for key in path:
            target = target[key]
        if not isinstance(target, dict):
            return "well-typed", "", spec
        target["surprise"] = bad["surprise"]
        return what, ".".join(map(str, path + ("surprise",))), spec
    if not path:
        return "wrong type", "spec", bad  # the whole spec replaced
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    return what, ".".join(map(str, path)), spec


def cel_rules(schema: dict[str, Any], path: str = "spec") -> list[tuple[str, str]]:
    """(path, message) of every CEL rule under spec, to check the rejections name them."""
    found = [(path, r["message"]) for r in schema.get("x-kubernetes-validations", [])]
    for name, sub in (schema.get("properties") or {}).items():
        found += cel_rules(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += cel_rules(schema["items"], f"{path}[]")
    return found


def normalise(message: str) -> str:
    return re.sub(r"\s+", " ", message)
