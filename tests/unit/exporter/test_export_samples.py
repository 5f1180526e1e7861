"""Sample inputs: generated from TensorSpecs with a fixed seed, or read from .npy / JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from servedmodel_exporter.errors import UsageError
from servedmodel_exporter.samples import UNKNOWN_DIM, generate, load

SPECS = {
    "image": tf.TensorSpec([None, 3, None], tf.float32, name="image"),
    "ids": tf.TensorSpec([None, 4], tf.int64, name="ids"),
    "mask": tf.TensorSpec([None], tf.bool, name="mask"),
    "text": tf.TensorSpec([None], tf.string, name="text"),
}


def test_generate_fills_unknown_dims_and_keeps_dtypes() -> None:
    samples = generate(SPECS)
    assert samples["image"].shape == (UNKNOWN_DIM, 3, UNKNOWN_DIM) and samples["image"].dtype == np.float32
    assert samples["ids"].shape == (UNKNOWN_DIM, 4) and samples["ids"].dtype == np.int64
    assert samples["mask"].dtype == np.bool_
    assert samples["text"].tolist() == [b"sample"] * UNKNOWN_DIM
    for name, spec in SPECS.items():
        assert spec.is_compatible_with(tf.constant(samples[name]))


def test_generate_is_reproducible() -> None:
    first, second = generate(SPECS), generate(SPECS)
    np.testing.assert_array_equal(first["image"], second["image"])
    assert not np.array_equal(first["image"], generate(SPECS, seed=1)["image"])


def test_unknown_rank_needs_user_samples() -> None:
    with pytest.raises(UsageError, match="unknown rank; pass --sample-inputs"):
        generate({"x": tf.TensorSpec(None, tf.float32, name="x")})


def test_load_json_converts_to_signature_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"ids": [[1, 2, 3, 4]], "text": ["hello"]}))
    specs = {k: SPECS[k] for k in ("ids", "text")}
    loaded = load(path, specs)
    assert loaded["ids"].dtype == np.int64 and loaded["ids"].shape == (1, 4)
    assert loaded["text"].tolist() == [b"hello"]


def test_load_json_with_wrong_names(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"idz": [[1, 2, 3, 4]]}))
    with pytest.raises(UsageError, match=r"missing \['ids'\], unknown \['idz'\]"):
        load(path, {"ids": SPECS["ids"]})


def test_load_json_with_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"ids": [[1, 2, 3]]}))
    with pytest.raises(UsageError, match=r"'ids' has shape \(1, 3\), the signature expects \(None, 4\)"):
        load(path, {"ids": SPECS["ids"]})


def test_load_npy_for_single_input(tmp_path: Path) -> None:
    path = tmp_path / "in.npy"
    np.save(path, np.ones((5, 4), dtype=np.float64))
    loaded = load(path, {"ids": SPECS["ids"]})
    assert loaded["ids"].dtype == np.int64 and loaded["ids"].shape == (5, 4)


def test_load_npy_refuses_multi_input_signatures(tmp_path: Path) -> None:
    path = tmp_path / "in.npy"
    np.save(path, np.ones((1, 4)))
    with pytest.raises(UsageError, match="only fits a single-input signature"):
        load(path, SPECS)


def test_load_rejects_other_formats_and_garbage(tmp_path: Path) -> None:
    csv, bad_json = tmp_path / "in.csv", tmp_path / "in.json"
    csv.write_text("1,2")
    bad_json.write_text("{not json")
    with pytest.raises(UsageError, match="must be a .npy or .json file"):
        load(csv, SPECS)
    with pytest.raises(UsageError, match="not a readable JSON file"):
        load(bad_json, SPECS)
