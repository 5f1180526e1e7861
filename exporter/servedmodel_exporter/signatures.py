"""Describe a SavedModel's signatures from ``saved_model.pb`` alone, like ``saved_model_cli show --all``.

Reading the protobuf instead of loading the model keeps ``list``/``inspect`` cheap and side-effect free.
The protobuf classes come from TensorFlow's package, imported only to read a ``saved_model.pb``: rendering
what a manifest or an S3 commit marker already records needs no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import VerificationError

if TYPE_CHECKING:
    from tensorflow.core.protobuf import meta_graph_pb2

SERVE_TAG = "serve"
_INTERNAL_SIGNATURES = ("__saved_model_init_op",)


def describe(saved_model_dir: Path) -> dict[str, Any]:
    """``{signature: {"method": str, "inputs": {name: {dtype, shape, tensor}}, "outputs": {...}}}``."""
    meta_graph = _serving_meta_graph(saved_model_dir)
    return {
        name: {
            "method": sig.method_name,
            "inputs": _tensors(sig.inputs),
            "outputs": _tensors(sig.outputs),
        }
        for name, sig in sorted(meta_graph.signature_def.items())
        if name not in _INTERNAL_SIGNATURES
    }


def render(signatures: dict[str, Any]) -> str:
    """Text in the layout of ``saved_model_cli show --tag_set serve --all``."""
    lines = ["MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:", ""]
    for name, sig in signatures.items():
        lines.append(f"signature_def['{name}']:")
        for kind in ("inputs", "outputs"):
            noun = "input(s)" if kind == "inputs" else "output(s)"
            lines.append(f"  The given SavedModel SignatureDef contains the following {noun}:")
            for tensor_name, info in sig[kind].items():
                shape = (
                    "unknown_rank"
                    if info["shape"] is None
                    else "(" + ", ".join(map(str, info["shape"])) + ")"
                )
                lines += [
                    f"    {kind}['{tensor_name}'] tensor_info:",
                    f"        dtype: {info['dtype']}",
                    f"        shape: {shape}",
                    f"        name: {info['tensor']}",
                ]
        lines += [f"  Method name is: {sig['method']}", ""]
    return "\n".join(lines)


def _serving_meta_graph(saved_model_dir: Path) -> meta_graph_pb2.MetaGraphDef:
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = saved_model_dir / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(pb_path.read_bytes())
    except (OSError, DecodeError) as exc:
        raise VerificationError(f"cannot read {pb_path}: {exc}") from exc
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise VerificationError(
        f"{saved_model_dir} has no MetaGraph tagged {SERVE_TAG!r}, which TF Serving loads"
    )


def _tensors(infos: Any) -> dict[str, dict[str, Any]]:
    from tensorflow.core.framework import types_pb2

    return {
        key: {
            "dtype": types_pb2.DataType.Name(info.dtype),
            "shape": None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim],
            "tensor": info.name,
        }
        for key, info in sorted(infos.items())
    }
