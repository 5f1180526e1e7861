"""Running a signature of a loaded SavedModel: Predict, Classify and Regress (shared by REST and gRPC).

Predict feeds the signature's input tensors and fetches its outputs (``predict_util.cc``). Classify and
Regress need a signature of that method whose one input takes serialized ``tf.Example`` protos
(``classifier.cc``, ``regressor.cc``; the messages below are recalled from upstream, the reference does not
quote them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import invalid
from .servable import Servable

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def check_input_aliases(sig: Any, names: set[str]) -> None:
    """Every signature input must be sent, and nothing else (gRPC; REST's JSON checks cover this)."""
    expected = set(sig.inputs)
    if names != expected:
        extra, missing = sorted(names - expected), sorted(expected - names)
        raise invalid(f"input size does not match signature: {len(names)}!={len(expected)} "
                      f"len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(extra)}}}. "
                      f"Missing but required: {{{','.join(missing)}}}.")


def predict(servable: Servable, sig: Any, inputs: dict[str, np.ndarray],
            output_filter: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run the signature: inputs by alias -> outputs by alias (all, or those in ``output_filter``)."""
    check_input_aliases(sig, set(inputs))
    outputs = dict(sig.outputs)
    if output_filter:
        for alias in output_filter:
            if alias not in outputs:
                raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be "
                              f"in the set {{{','.join(sorted(outputs))}}}.")
        outputs = {k: v for k, v in outputs.items() if k in output_filter}
    feeds = {sig.inputs[alias].name: value for alias, value in inputs.items()}
    return servable.run({alias: info.name for alias, info in outputs.items()}, feeds)


def serialized_input(input_proto: Any) -> list[bytes]:
    """An ``Input`` proto as serialized tf.Examples: example_list, or example_list_with_context with the
    context merged into each example (example features win)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in input_proto.example_list.examples]
    if kind == "example_list_with_context":
        both = input_proto.example_list_with_context
        out = []
        for example in both.examples:
            merged = type(example)()
            merged.CopyFrom(both.context)
            merged.MergeFrom(example)
            out.append(merged.SerializeToString())
        return out
    raise invalid("Input is empty.")


def _examples_feed(sig: Any, serialized: list[bytes]) -> dict[str, Any]:
    if len(sig.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    (info,) = sig.inputs.values()
    return {info.name: np.array(serialized, dtype=object)}


def classify(servable: Servable, sig: Any, serialized: list[bytes]) -> list[list[tuple[str, float]]]:
    """Per example a list of (label, score): labels from ``classes``, scores from ``scores``."""
    if sig.method_name != CLASSIFY_METHOD:
        raise invalid(f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
                      f"Was: {sig.method_name}")
    fetches = {k: sig.outputs[k].name for k in ("classes", "scores") if k in sig.outputs}
    if not fetches:
        raise invalid("Expected classification signature outputs to contain classes or scores.")
    out = servable.run(fetches, _examples_feed(sig, serialized))
    classes, scores = out.get("classes"), out.get("scores")
    n = len(serialized)
    for alias, arr in out.items():
        if np.ndim(arr) != 2 or np.shape(arr)[0] != n:
            raise invalid(f"Expected Tensor shape: [{n} num_classes] but got {list(np.shape(arr))} "
                          f"for {alias}")
    width = np.shape(classes if classes is not None else scores)[1]
    return [[(classes[i][j].decode("utf-8", "replace") if classes is not None else "",
              scores[i][j] if scores is not None else np.float32(0)) for j in range(width)] for i in range(n)]


def regress(servable: Servable, sig: Any, serialized: list[bytes]) -> list[Any]:
    """One value per example from the ``outputs`` tensor, shape [batch] or [batch, 1]."""
    if sig.method_name != REGRESS_METHOD:
        raise invalid(f"Expected regression signature method_name to be {REGRESS_METHOD}. "
                      f"Was: {sig.method_name}")
    if "outputs" not in sig.outputs or len(sig.outputs) != 1:
        raise invalid("Expected one output Tensor.")
    out = servable.run({"outputs": sig.outputs["outputs"].name}, _examples_feed(sig, serialized))["outputs"]
    n = len(serialized)
    if not (np.shape(out) == (n,) or np.shape(out) == (n, 1)):
        raise invalid(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                      f"{list(np.shape(out))}")
    return list(np.reshape(out, (n,)))
