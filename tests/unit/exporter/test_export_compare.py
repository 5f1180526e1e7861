"""Parity comparison of source outputs against SavedModel outputs."""

from __future__ import annotations

import numpy as np
import pytest
from servedmodel_exporter.errors import VerificationError
from servedmodel_exporter.verify import compare


def test_within_tolerance_reports_max_abs_diff() -> None:
    want = {"output_0": np.array([1.0, 2.0], np.float32), "ids": np.array([1, 2])}
    got = {"output_0": np.array([1.0, 2.0 + 1e-6], np.float32), "ids": np.array([1, 2])}
    diffs = compare(want, got, atol=1e-5, rtol=0)
    assert diffs["ids"] == 0.0 and 0 < diffs["output_0"] < 1e-5


def test_every_mismatch_is_named() -> None:
    want = {"a": np.zeros(3), "b": np.zeros((2, 2)), "c": np.array([1, 2])}
    got = {"a": np.full(3, 0.5), "b": np.zeros((2, 3)), "c": np.array([1, 3])}
    with pytest.raises(VerificationError) as info:
        compare(want, got, atol=1e-3, rtol=1e-3)
    message = str(info.value)
    assert "a: max abs diff 0.5 exceeds atol=0.001 rtol=0.001" in message
    assert "b: shape (2, 3) != (2, 2)" in message
    assert "c: values differ" in message


def test_output_names_must_match() -> None:
    with pytest.raises(VerificationError, match=r"source model has \['x'\], SavedModel has \['y'\]"):
        compare({"x": np.zeros(1)}, {"y": np.zeros(1)}, atol=0, rtol=0)
