"""Loading one version folder into a servable: its signatures, and a TensorFlow session that runs them.

A version "loads" iff ``saved_model.pb`` or ``saved_model.pbtxt`` exists (§5). A real SavedModel (a ``serve``
MetaGraph with a graph) is loaded the way TF Serving's SavedModelBundle does it: a session restores the
graph and variables, and a request runs the signature's tensor names in it; a load error fails the load.
Placeholder files (what most tests write: any bytes, or a signature-only proto) load without TensorFlow
and answer with ``fake_inference``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from typing import Any

from google.protobuf import text_format

from .errors import CODES, TFError
from .protos import api_pb2


# Written when <version>/saved_model.pb(txt) is missing; text and code of TF's SavedModel reader.
def missing_saved_model_error(path: str) -> TFError:
    return TFError("NOT_FOUND", f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                                f"{path}. Check that the directory exists and that you have the right "
                                f"permissions for accessing it.")


def default_signature_map() -> Any:
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
    return sdm


@dataclasses.dataclass
class Servable:
    """A loaded version. ``session`` is None for placeholders (answered by ``fake_inference``)."""

    path: str
    signatures: Any  # SignatureDefMap
    session: Any = None

    @property
    def placeholder(self) -> bool:
        return self.session is None

    def run(self, fetches: dict[str, str], feeds: dict[str, Any]) -> dict[str, Any]:
        """Session::Run: feed tensor names -> values, fetch output aliases -> numpy arrays.

        TF errors keep their code; Python's own feed checks (shape/dtype, ValueError) are INVALID_ARGUMENT.
        """
        tf = tensorflow()
        names = sorted(fetches)
        try:
            values = self.session.run([fetches[n] for n in names], feed_dict=feeds)
        except tf.errors.OpError as e:
            code = next((k for k, v in CODES.items() if v == e.error_code), "UNKNOWN")
            raise TFError(code, e.message) from None
        except (ValueError, TypeError) as e:
            raise TFError("INVALID_ARGUMENT", str(e)) from None
        return dict(zip(names, values, strict=True))


@functools.cache
def tensorflow() -> Any:
    """TensorFlow, imported on first use only (seconds): placeholder-only servers never import it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # the v1 loader's deprecation notice on every load
    return tf


_load_lock = threading.Lock()  # graph construction is not meant to run concurrently


def _read_saved_model(version_dir: str) -> Any | None:
    """The SavedModel proto, or None when the file is not one (placeholder bytes)."""
    pb = os.path.join(version_dir, "saved_model.pb")
    pbtxt = os.path.join(version_dir, "saved_model.pbtxt")
    if not (os.path.isfile(pb) or os.path.isfile(pbtxt)):
        raise missing_saved_model_error(version_dir)
    saved = api_pb2().saved_model.SavedModel()
    try:
        if os.path.isfile(pb):
            with open(pb, "rb") as f:
                saved.ParseFromString(f.read())
        else:
            with open(pbtxt, encoding="utf-8") as f:
                text_format.Parse(f.read(), saved)
    except Exception:  # noqa: BLE001 - arbitrary placeholder bytes are allowed
        return None
    return saved


def load_servable(version_dir: str, tags: tuple[str, ...] = ("serve",),
                  threads: tuple[int, int] = (0, 0)) -> Servable:
    """Load a version folder; raises TFError (the load fails) when TensorFlow cannot load a real model."""
    saved = _read_saved_model(version_dir)
    metas = [] if saved is None else saved.meta_graphs
    meta = next((mg for mg in metas if set(tags) <= set(mg.meta_info_def.tags) and mg.signature_def), None)
    if meta is None:
        return Servable(version_dir, default_signature_map())
    sdm = api_pb2().metadata.SignatureDefMap()
    for k, sd in meta.signature_def.items():
        sdm.signature_def[k].CopyFrom(sd)
    if not meta.graph_def.node:  # a signature-only proto: nothing to run
        return Servable(version_dir, sdm)
    return Servable(version_dir, sdm, _load_session(version_dir, list(tags), threads))


def _load_session(version_dir: str, tags: list[str], threads: tuple[int, int]) -> Any:
    """A session per version, with the intra/inter-op thread counts (0 = TensorFlow's choice)."""
    tf = tensorflow()
    graph = tf.Graph()
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads[0],
                                      inter_op_parallelism_threads=threads[1])
    session = tf.compat.v1.Session(graph=graph, config=config)
    try:
        with _load_lock, graph.as_default():
            tf.compat.v1.saved_model.loader.load(session, tags, version_dir)
    except tf.errors.OpError as e:
        session.close()
        code = next((k for k, v in CODES.items() if v == e.error_code), "UNKNOWN")
        raise TFError(code, e.message) from None
    except (ValueError, RuntimeError, OSError) as e:
        session.close()
        raise TFError("INTERNAL", f"Failed to load SavedModel at {version_dir}: {e}") from None
    return session
