"""TF Serving's REST API (`/v1/models/<model>[/versions/N | /labels/L]:predict` and `/metadata`) over a
Route. TF Serving's error messages (`{"error": "..."}`) are raised as they are."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import numpy as np

from . import tensors
from .errors import ModelServerError
from .resolve import Target
from .routes import Route


def model_path(model: str, version: int | None = None, label: str | None = None) -> str:
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label:
        path += f"/labels/{quote(label, safe='')}"
    return path


def answer(resp: Any) -> dict[str, Any]:
    """The JSON of a 2xx answer; TF Serving's error message as a ModelServerError otherwise."""
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if resp.status_code >= 400:
        message = doc.get("error") if isinstance(doc, dict) else None
        raise ModelServerError(message or resp.text.strip() or f"HTTP {resp.status_code}", resp.status_code)
    if not isinstance(doc, dict):
        raise ModelServerError(
            f"the model server answered with something that is not JSON: {resp.text[:200]}", resp.status_code
        )
    return doc


def signature(metadata: dict[str, Any], name: str) -> dict[str, Any]:
    """One signature of GET .../metadata: {"inputs": {...}, "outputs": {...}, "method_name": ...}."""
    sigs = ((metadata.get("metadata") or {}).get("signature_def") or {}).get("signature_def") or {}
    if name not in sigs:
        raise ModelServerError(f'Serving signature name: "{name}" not found in signature def', 400)
    return sigs[name]


def metadata(route: Route, target: Target, version: int | None, label: str | None) -> dict[str, Any]:
    return answer(route.send("GET", model_path(target.model, version, label) + "/metadata"))


def predict(
    route: Route,
    target: Target,
    instances: Any,
    version: int | None = None,
    label: str | None = None,
    signature_name: str = "serving_default",
) -> dict[str, np.ndarray]:
    body: dict[str, Any] = {"instances": tensors.jsonable(instances)}
    if signature_name != "serving_default":
        body["signature_name"] = signature_name
    doc = answer(route.send("POST", model_path(target.model, version, label) + ":predict", body))
    # The signature gives the output names (one output comes back unnamed) and dtypes (JSON has none).
    # Asked of the same version or label, after the prediction, so bad input is reported first.
    outputs = signature(metadata(route, target, version, label), signature_name).get("outputs") or {}
    by_name = tensors.rows_to_outputs(doc.get("predictions", []), sorted(outputs))
    return {
        name: tensors.as_array(values, (outputs.get(name) or {}).get("dtype"))
        for name, values in by_name.items()
    }
