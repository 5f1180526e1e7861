"""Loading one version folder: what makes it load, and its signatures (reference §1.5, §5)."""

from __future__ import annotations

import os
from typing import Any

from google.protobuf import text_format

from .errors import TFError
from .protos import api_pb2


# Written when <version>/saved_model.pb(txt) is missing; text and code of TF's SavedModel reader.
def missing_saved_model_error(path: str) -> TFError:
    return TFError("NOT_FOUND", f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                                f"{path}. Check that the directory exists and that you have the right "
                                f"permissions for accessing it.")


def default_signature_map_bytes() -> bytes:
    """half_plus_two's ``serving_default``: x float [-1,1] -> y float [-1,1] (§1.5 reference output)."""
    apis = api_pb2()
    sdm = apis.metadata.SignatureDefMap()
    sd = sdm.signature_def["serving_default"]
    sd.method_name = "tensorflow/serving/predict"
    for key, tensor in (("x", "x:0"), ("y", "y:0")):
        info = (sd.inputs if key == "x" else sd.outputs)[key]
        info.name = tensor
        info.dtype = apis.types.DT_FLOAT
        info.tensor_shape.dim.add(size=-1)
        info.tensor_shape.dim.add(size=1)
    return sdm.SerializeToString()


def read_signatures(version_dir: str) -> bytes:
    """The version "loads" iff saved_model.pb or saved_model.pbtxt exists (§5). A real SavedModel's "serve"
    signatures are used; any other bytes get half_plus_two's signature."""
    pb = os.path.join(version_dir, "saved_model.pb")
    pbtxt = os.path.join(version_dir, "saved_model.pbtxt")
    if not (os.path.isfile(pb) or os.path.isfile(pbtxt)):
        raise missing_saved_model_error(version_dir)
    apis = api_pb2()
    saved = apis.saved_model.SavedModel()
    try:
        if os.path.isfile(pb):
            with open(pb, "rb") as f:
                saved.ParseFromString(f.read())
        else:
            with open(pbtxt, encoding="utf-8") as f:
                text_format.Parse(f.read(), saved)
    except Exception:  # noqa: BLE001 - arbitrary placeholder bytes are allowed
        return default_signature_map_bytes()
    for mg in saved.meta_graphs:
        if "serve" in mg.meta_info_def.tags and mg.signature_def:
            sdm = apis.metadata.SignatureDefMap()
            for k, sd in mg.signature_def.items():
                sdm.signature_def[k].CopyFrom(sd)
            return sdm.SerializeToString()
    return default_signature_map_bytes()


def signature_map(blob: bytes) -> Any:
    sdm = api_pb2().metadata.SignatureDefMap()
    sdm.ParseFromString(blob)
    return sdm

