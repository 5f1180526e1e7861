"""Real inference over REST (§1.6): the served SavedModels answer what Keras (or plain math) answers.

One double per module serves ``ranker`` (two Keras versions, label ``stable`` -> 1) and ``examples`` (a
TF1-style model with predict, classify and regress signatures); the models are built once per session.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import requests
from tfserving_double import TFServingDouble

X = np.array([[0.1, -1.5, 2.0, 3.25], [1.0, 0.0, -0.5, 0.75], [4.0, 2.0, -3.0, 0.5]], dtype=np.float32)
TOL = 1e-5


@pytest.fixture(scope="module")
def double(tf_double: TFServingDouble) -> TFServingDouble:
    return tf_double


def post(d: TFServingDouble, path: str, body: object) -> requests.Response:
    return requests.post(f"{d.rest_url}/v1/models/{path}", json=body, timeout=30)


def test_the_two_versions_really_differ(keras_versions) -> None:
    """Otherwise the routing tests below could not tell the versions apart."""
    one, two = keras_versions.expected(1, X), keras_versions.expected(2, X)
    assert np.abs(one["score"] - two["score"]).max() > 1e-2


def test_row_format_matches_keras(double, keras_versions) -> None:
    r = post(double, "ranker:predict", {"instances": X.tolist()})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 3 and set(predictions[0]) == {"probs", "score"}, "one object per row"
    expected = keras_versions.expected(2, X)  # no version asked: the latest AVAILABLE one
    for name in ("probs", "score"):
        got = np.array([row[name] for row in predictions])
        np.testing.assert_allclose(got, expected[name], atol=TOL)
    np.testing.assert_allclose(np.array([row["probs"] for row in predictions]).sum(axis=1), 1.0, atol=1e-5)


def test_row_format_objects_by_input_name(double, keras_versions) -> None:
    r = post(double, "ranker:predict", {"instances": [{"features": row} for row in X.tolist()]})
    assert r.status_code == 200, r.text
    got = np.array([row["score"] for row in r.json()["predictions"]])
    np.testing.assert_allclose(got, keras_versions.expected(2, X)["score"], atol=TOL)


def test_columnar_format_matches_keras(double, keras_versions) -> None:
    r = post(double, "ranker:predict", {"inputs": {"features": X.tolist()}})
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert set(outputs) == {"probs", "score"}, "columnar: one entry per output, each the whole batch"
    expected = keras_versions.expected(2, X)
    np.testing.assert_allclose(np.array(outputs["probs"]), expected["probs"], atol=TOL)
    np.testing.assert_allclose(np.array(outputs["score"]), expected["score"], atol=TOL)
    plain = post(double, "ranker:predict", {"inputs": X.tolist()}).json()["outputs"]
    np.testing.assert_allclose(np.array(plain["score"]), expected["score"], atol=TOL)


@pytest.mark.parametrize(
    "path,version",
    [("ranker/versions/1", 1), ("ranker/versions/2", 2), ("ranker/labels/stable", 1), ("ranker", 2)],
)
def test_version_and_label_select_the_model(double, keras_versions, path: str, version: int) -> None:
    rows = post(double, f"{path}:predict", {"instances": X.tolist()}).json()["predictions"]
    np.testing.assert_allclose(
        np.array([row["score"] for row in rows]), keras_versions.expected(version, X)["score"], atol=TOL
    )
    columns = post(double, f"{path}:predict", {"inputs": {"features": X.tolist()}}).json()["outputs"]
    expected = keras_versions.expected(version, X)["probs"]
    np.testing.assert_allclose(np.array(columns["probs"]), expected, atol=TOL)


def test_float32_values_keep_their_shortest_spelling(double, keras_versions) -> None:
    r = post(double, "ranker/versions/1:predict", {"instances": X[:1].tolist()})
    score = keras_versions.expected(1, X[:1])["score"][0][0]
    assert str(np.float32(score)) in r.text, "float32 written as float32 (WriteDecimal), not widened"


def test_bad_inputs_are_400(double) -> None:
    wrong_width = post(double, "ranker:predict", {"instances": [[1.0, 2.0, 3.0]]})
    assert wrong_width.status_code == 400 and "(None, 4)" in wrong_width.json()["error"]
    wrong_type = post(double, "ranker:predict", {"instances": [["a", "b", "c", "d"]]})
    assert wrong_type.status_code == 400 and "is not of expected type: float" in wrong_type.json()["error"]
    missing = post(double, "ranker:predict", {"inputs": {"other": X.tolist()}})
    assert missing.status_code == 400
    assert missing.json() == {"error": "Missing named input: features in 'inputs' object."}
    unknown_sig = post(double, "ranker:predict", {"signature_name": "nope", "instances": X.tolist()})
    assert unknown_sig.json() == {"error": 'Serving signature name: "nope" not found in signature def'}


def test_strings_b64_in_and_out(double) -> None:
    raw = b"\xffbin"
    body = {"instances": ["abc", {"b64": base64.b64encode(raw).decode()}]}
    r = post(double, "examples:predict", body)
    assert r.status_code == 200, r.text
    first, second = r.json()["predictions"]
    assert first == {"upper": "ABC", "length": 3, "raw_bytes": {"b64": base64.b64encode(b"abc!").decode()}}
    assert second["length"] == 4 and base64.b64decode(second["raw_bytes"]["b64"]) == raw + b"!"


def test_regress_and_classify_run_the_signatures(double) -> None:
    xs = [0.5, -2.0, 3.0]
    reg = post(double, "examples:regress", {"signature_name": "regress", "examples": [{"x": v} for v in xs]})
    assert reg.status_code == 200, reg.text
    np.testing.assert_allclose(reg.json()["results"], [0.5 * v + 2 for v in xs], atol=TOL)
    cls = post(
        double,
        "examples:classify",
        {"signature_name": "classify", "context": {"x": 9.0}, "examples": [{"x": v} for v in xs]},
    )
    assert cls.status_code == 200, cls.text
    for v, result in zip(xs, cls.json()["results"], strict=True):  # example features win over context
        p = 1 / (1 + np.exp(-v))
        assert [label for label, _ in result] == ["pos", "neg"]
        np.testing.assert_allclose([score for _, score in result], [p, 1 - p], atol=TOL)


def test_classify_needs_a_classification_signature(double) -> None:
    r = post(double, "ranker:classify", {"examples": [{"features": [1.0, 2.0, 3.0, 4.0]}]})
    assert r.status_code == 400
    assert r.json() == {
        "error": "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict"
    }
    r = post(double, "examples:regress", {"signature_name": "classify", "examples": [{"x": 1.0}]})
    assert r.status_code == 400 and r.json()["error"].startswith("Expected regression signature method_name")


def test_a_broken_saved_model_fails_its_load(make_double, keras_versions, tmp_path: Path) -> None:
    """A real graph whose variables are missing cannot load: the version ends in END with TF's error."""
    import shutil

    base = tmp_path / "m"
    shutil.copytree(keras_versions.base / "1", base / "1", ignore=shutil.ignore_patterns("variables"))
    d = make_double(model_name="m", model_base_path=str(base)).start(wait=False)
    assert not d.wait_ready(timeout=60) and d.startup_error is not None
    rec = d.manager.version_states("m")[1]
    assert rec.state == "END" and rec.error_code != "OK" and rec.error_message
