"""Checks a staged SavedModel must pass before it may be published.

The staged copy is loaded exactly as TF Serving will load it (``models.load_signature``), must expose the
requested signature, and must give the same outputs as the source model on the same sample inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from .errors import VerificationError
from .models import Outputs, Predict, input_specs, signature_predict
from .samples import generate, load

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    signature: str
    samples: dict[str, np.ndarray]
    sample_origin: str
    max_abs_diff: dict[str, float]
    atol: float
    rtol: float


def verify(
    function: tf.types.experimental.ConcreteFunction,
    reference: Predict,
    signature: str,
    atol: float,
    rtol: float,
    sample_file: Path | None = None,
) -> Report:
    """Run the staged ``signature`` and the source model on the same inputs and compare the outputs."""
    specs = input_specs(function)
    samples = load(sample_file, specs) if sample_file else generate(specs)
    log.info("parity check of %r on inputs %s", signature, {k: v.shape for k, v in samples.items()})
    diffs = compare(reference(samples), signature_predict(function)(samples), atol, rtol)
    origin = str(sample_file) if sample_file else "generated"
    return Report(signature, samples, origin, diffs, atol, rtol)


def compare(expected: Outputs, actual: Outputs, atol: float, rtol: float) -> dict[str, float]:
    """Max absolute difference per output; raises with every mismatch named if any is out of tolerance."""
    if set(expected) != set(actual):
        raise VerificationError(
            f"output names differ: source model has {sorted(expected)}, SavedModel has {sorted(actual)}"
        )
    problems, diffs = [], {}
    for name in sorted(expected):
        want, got = expected[name], actual[name]
        if want.shape != got.shape:
            problems.append(f"{name}: shape {got.shape} != {want.shape}")
            continue
        if want.dtype.kind in "fc":
            diffs[name] = float(np.max(np.abs(want - got), initial=0.0))
            if not np.allclose(got, want, atol=atol, rtol=rtol, equal_nan=True):
                problems.append(f"{name}: max abs diff {diffs[name]:.3g} exceeds atol={atol} rtol={rtol}")
        else:
            diffs[name] = 0.0
            if not np.array_equal(want, got):
                problems.append(f"{name}: values differ")
    if problems:
        raise VerificationError("parity check failed: " + "; ".join(problems))
    return diffs
