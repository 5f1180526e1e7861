"""GetModelStatus and GetModelMetadata as protos, shared by the REST and gRPC APIs (§1.4, §1.5).

Status lists every version the monitor knows (END ones too), newest first, and does not resolve labels;
metadata goes through the servable lookup (Latest/Specific/label) and has ``signature_def`` only.
"""

from __future__ import annotations

from typing import Any

from .errors import CODES, TFError, invalid
from .manager import ModelManager, VersionRecord
from .protos import api_pb2


def status_response(states: dict[int, VersionRecord]) -> Any:
    """GetModelStatusResponse from monitor records: descending versions, error details only when not OK."""
    pb = api_pb2().status
    resp = pb.GetModelStatusResponse()
    for v in sorted(states, reverse=True):
        rec = states[v]
        mvs = resp.model_version_status.add(version=v, state=pb.ModelVersionStatus.State.Value(rec.state))
        mvs.status.error_code = CODES[rec.error_code]
        if rec.error_code != "OK":
            mvs.status.error_message = rec.error_message
    return resp


def model_status(manager: ModelManager, name: str, version: int | None) -> Any:
    """GetModelStatusImpl: NOT_FOUND for an unknown model or version; 200 even if nothing is AVAILABLE."""
    if not name:
        raise invalid("Missing model name in request.")
    states = manager.version_states(name)
    if version is not None:
        if version not in states:
            raise TFError("NOT_FOUND", f"Could not find version {version} of model {name}")
        states = {version: states[version]}
    elif not states:
        raise TFError("NOT_FOUND", f"Could not find any versions of model {name}")
    return status_response(states)


def model_metadata(manager: ModelManager, name: str, version: int | None, label: str | None) -> Any:
    """GetModelMetadataResponse of the servable the request names (lookup errors as for inference)."""
    if not name:
        raise invalid("Missing model name in request.")
    chosen, rec = manager.resolve(name, version, label)
    resp = api_pb2().metadata.GetModelMetadataResponse()
    resp.model_spec.name = name
    resp.model_spec.version.value = chosen
    resp.metadata["signature_def"].Pack(rec.servable.signatures)
    return resp
