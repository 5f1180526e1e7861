"""Sample inputs for parity checks and warmup: generated from a signature's TensorSpecs or read from a file.

Generated samples use a fixed seed so a failing parity check can be reproduced exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from .errors import UsageError

SEED = 20240601
UNKNOWN_DIM = 2


def generate(specs: Mapping[str, tf.TensorSpec], seed: int = SEED) -> dict[str, np.ndarray]:
    """One small batch per input; unknown dimensions become ``UNKNOWN_DIM``."""
    rng = np.random.default_rng(seed)
    return {name: _random_array(spec, rng) for name, spec in sorted(specs.items())}


def load(path: Path, specs: Mapping[str, tf.TensorSpec]) -> dict[str, np.ndarray]:
    """Read ``.npy`` (single-input signatures only) or JSON ``{"input": [...]}``, fit to ``specs``."""
    if path.suffix == ".npy":
        if len(specs) != 1:
            raise UsageError(
                f"{path}: a .npy file only fits a single-input signature; inputs are {sorted(specs)}"
            )
        raw = {next(iter(specs)): _read_npy(path)}
    elif path.suffix == ".json":
        raw = _read_json(path)
    else:
        raise UsageError(f"{path}: sample inputs must be a .npy or .json file")
    missing, unknown = set(specs) - set(raw), set(raw) - set(specs)
    if missing or unknown:
        raise UsageError(
            f"{path}: sample inputs do not match the signature "
            f"(missing {sorted(missing)}, unknown {sorted(unknown)})"
        )
    return {name: _fit(name, value, specs[name]) for name, value in sorted(raw.items())}


def _random_array(spec: tf.TensorSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.shape.rank is None:
        raise UsageError(f"input {spec.name!r} has unknown rank; pass --sample-inputs")
    shape = tuple(UNKNOWN_DIM if dim is None else dim for dim in spec.shape.as_list())
    dtype = spec.dtype
    if dtype.is_floating or dtype.is_complex:
        return rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
    if dtype.is_integer:
        return rng.integers(0, 10, size=shape).astype(dtype.as_numpy_dtype)
    if dtype.is_bool:
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype == tf.string:
        return np.full(shape, b"sample", dtype=object)
    raise UsageError(
        f"cannot generate samples for input {spec.name!r} of dtype {dtype.name}; pass --sample-inputs"
    )


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable .npy file: {exc}") from exc


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f'{path}: expected a JSON object like {{"input_name": [...]}}')
    return data


def _fit(name: str, value: object, spec: tf.TensorSpec) -> np.ndarray:
    dtype = object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype
    try:
        array = np.asarray(value).astype(dtype)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"sample input {name!r} cannot be converted to {spec.dtype.name}: {exc}") from exc
    if dtype is object:
        array = np.vectorize(lambda s: s.encode() if isinstance(s, str) else s, otypes=[object])(array)
    if not spec.shape.is_compatible_with(array.shape):
        raise UsageError(f"sample input {name!r} has shape {array.shape}, the signature expects {spec.shape}")
    return array
