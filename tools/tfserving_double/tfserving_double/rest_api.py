"""The REST API under ``/v1``: HttpRestApiHandler::ProcessRequest (reference §1.2-§1.8).

Parses the path with the two URL regexes, dispatches to status, metadata or inference, and maps a TF
status to HTTP. Transport (sockets, libevent's own pages, CORS, metrics path) is ``http_server``'s job.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from . import fake_inference, inference
from .errors import HTTP_FOR_CODE, INT64_MAX, TFError, invalid
from .json_tensors import (
    dtype_name,
    examples_from_json,
    predict_inputs,
    predict_response,
    serialized_examples,
)
from .json_text import error_body, message_to_json, parse_json_object, rapidjson_pretty
from .manager import ModelManager
from .protos import api_pb2
from .status_metadata import model_metadata, model_status
from .tensors import json_to_array

PREDICT_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I)
STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)


def _url_decode(value: str) -> str:
    """curl_easy_unescape: %XX only ('+' stays), invalid escapes kept verbatim."""
    raw = value.encode("utf-8", errors="surrogateescape")
    out = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)
    return out.decode("utf-8", errors="replace")


@dataclasses.dataclass
class RestReply:
    status: int
    body: str
    model_name: str = ""
    code: str = "OK"
    api: str = ""


class RestApi:
    """HttpRestApiHandler::ProcessRequest: parse the path, dispatch, map the status to HTTP."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def handle(self, method: str, path: str, body: bytes) -> RestReply:
        try:
            info = self._parse(method, path)
        except TFError as e:  # ParseModelInfo errors return before MakeJsonFromStatus: empty body (§1.7)
            return RestReply(HTTP_FOR_CODE[e.code], "", code=e.code)
        name = info.get("name") or ""
        try:
            body_text, api = self._dispatch(method, path, info, body)
        except TFError as e:
            return RestReply(HTTP_FOR_CODE.get(e.code, 500), error_body(e.message), name, e.code)
        except Exception as e:  # noqa: BLE001 - a bug in the double: an INTERNAL error, not a dropped reply
            return RestReply(500, error_body(f"{type(e).__name__}: {e}"), name, "INTERNAL")
        return RestReply(200, body_text, name, "OK", api)

    @staticmethod
    def _parse(method: str, path: str) -> dict[str, Any]:
        m = None
        if method == "POST":
            m = PREDICT_RE.fullmatch(path)
        elif method == "GET":
            m = STATUS_RE.fullmatch(path)
        if not m:
            return {"ok": False}
        name, version, label, tail = m.groups()
        info: dict[str, Any] = {"ok": True, "name": _url_decode(name) if name else None, "tail": tail or ""}
        if version is not None:
            v = int(version)
            if v > INT64_MAX:
                raise invalid(f"Failed to convert version: {version} to numeric.")
            info["version"] = v
        if label is not None:
            info["label"] = _url_decode(label)
        return info

    def _dispatch(self, method: str, path: str, info: dict[str, Any], body: bytes) -> tuple[str, str]:
        if info["ok"] and method == "POST" and info["tail"] in ("predict", "classify", "regress"):
            return self._inference(info, body), info["tail"]
        if info["ok"] and method == "GET":
            if info["tail"] == "metadata":
                return self._metadata(info), "GetModelMetadata"
            return self._status(info), "GetModelStatus"
        raise invalid(f"Malformed request: {method} {path}")

    def _status(self, info: dict[str, Any]) -> str:
        """GetModelStatusImpl (§1.4): the label is not resolved; END versions kept; descending versions."""
        status = model_status(self.manager, info["name"], info.get("version"))
        return message_to_json(status, preserve_names=False)

    def _metadata(self, info: dict[str, Any]) -> str:
        """GetModelMetadata (§1.5): servable lookup first, signature_def only, hand-concatenated JSON."""
        resp = model_metadata(self.manager, info["name"], info.get("version"), info.get("label"))
        return metadata_json(resp)

    def _inference(self, info: dict[str, Any], body: bytes) -> str:
        doc = parse_json_object(body)
        sig_name = doc.get("signature_name", "")
        if not isinstance(sig_name, str):
            raise invalid(f"JSON Value: {rapidjson_pretty(doc)} not formatted correctly. "
                           f"'signature_name' key must be a string value.")
        if info["tail"] != "predict":
            examples = examples_from_json(doc)
        _, rec = self.manager.resolve(info["name"], info.get("version"), info.get("label"))
        servable = rec.servable
        sigs = servable.signatures.signature_def
        effective = sig_name or "serving_default"
        if effective not in sigs:
            raise invalid(f'Serving signature name: "{effective}" not found in signature def')
        sig = sigs[effective]
        if info["tail"] == "predict":
            fmt, inputs = predict_inputs(doc, sig)
            if servable.placeholder:
                return fake_inference.predict_body(fmt, inputs, sig)
            arrays = {n: json_to_array(v, dtype_name(sig.inputs[n].dtype)) for n, v in inputs.items()}
            return predict_response(fmt, inference.predict(servable, sig, arrays))
        if servable.placeholder:
            scores = [fake_inference.fake_score(ex) for ex in examples]
            results: list[Any] = scores if info["tail"] == "regress" else [[["", s]] for s in scores]
            return rapidjson_pretty({"results": results})
        serialized = serialized_examples(doc, examples)
        if info["tail"] == "regress":
            return rapidjson_pretty({"results": inference.regress(servable, sig, serialized)})
        classes = inference.classify(servable, sig, serialized)
        return rapidjson_pretty({"results": [[list(pair) for pair in row] for row in classes]})


def metadata_json(resp: Any) -> str:
    """ToJsonString(GetModelMetadataResponse): per-field JSON, proto names, concatenated by hand (§1.5)."""
    sdm = api_pb2().metadata.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sdm)
    spec = message_to_json(resp.model_spec, preserve_names=True)
    sig = message_to_json(sdm, preserve_names=True)
    return "{\n\"model_spec\":" + spec + ",\n\"metadata\": {\"signature_def\": " + sig + "}\n}\n"
