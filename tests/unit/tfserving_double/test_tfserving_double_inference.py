"""Reference §1.5-§1.7 / checklist 5: metadata, predict/classify/regress order of checks and shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from tfsd_helpers import add_version, model_config


@pytest.fixture
def labelled(make_double, base: Path, tmp_path: Path):
    """Model m with versions 1 and 2 (policy all) and label stable -> 1."""
    for v in (1, 2):
        add_version(base, v)
    cfg = tmp_path / "models.config"
    cfg.write_text(
        model_config(
            {
                "name": "m",
                "base_path": base,
                "extra": "    model_version_policy { all {} }\n"
                '    version_labels { key: "stable" value: 1 }\n',
            }
        )
    )
    return make_double(model_config_file=str(cfg), allow_version_labels_for_unavailable_models=True).start()


def test_metadata_shape(shared) -> None:
    r = requests.get(f"{shared.rest_url}/v1/models/m/metadata", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["model_spec"] == {"name": "m", "signature_name": "", "version": "1"}
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "name": "x:0",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
            "unknown_rank": False,
        },
    }
    assert sig["outputs"]["y"]["name"] == "y:0"
    assert r.text.startswith('{\n"model_spec":{\n "name": "m"'), "hand-concatenated, 1-space pretty-printed"


def test_metadata_of_real_saved_model_signatures(make_double, base: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    mg = sm.meta_graphs.add()
    mg.meta_info_def.tags.append("serve")
    sd = mg.signature_def["classify_me"]
    sd.method_name = "tensorflow/serving/classify"
    sd.inputs["inputs"].name = "in:0"
    d = add_version(base, 5)
    (d / "saved_model.pb").write_bytes(sm.SerializeToString())
    dbl = make_double(model_name="m", model_base_path=str(base)).start()
    sigs = requests.get(f"{dbl.rest_url}/v1/models/m/versions/5/metadata", timeout=5).json()
    assert list(sigs["metadata"]["signature_def"]["signature_def"]) == ["classify_me"]


def test_metadata_errors(labelled) -> None:
    u = labelled.rest_url
    cases = {
        "/v1/models/nope/metadata": (404, "Servable not found for request: Latest(nope)"),
        "/v1/models/m/versions/9/metadata": (404, "Servable not found for request: Specific(m, 9)"),
        "/v1/models/m/labels/canary/metadata": (400, "Unrecognized servable version label: canary"),
    }
    for path, (code, message) in cases.items():
        r = requests.get(u + path, timeout=5)
        assert (r.status_code, r.json()) == (code, {"error": message}), path
    stable = requests.get(f"{u}/v1/models/m/labels/stable/metadata", timeout=5).json()
    latest = requests.get(f"{u}/v1/models/m/metadata", timeout=5).json()
    assert (stable["model_spec"]["version"], latest["model_spec"]["version"]) == ("1", "2")


def test_metadata_404_until_available(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base)).start()
    add_version(base, 2)
    # version 2 is not servable yet by its number until loaded; once loaded Latest moves to it
    assert d.wait_for_state("m", 2, "AVAILABLE", timeout=10)
    meta = requests.get(f"{d.rest_url}/v1/models/m/metadata", timeout=5).json()
    assert meta["model_spec"]["version"] == "2"
    assert d.wait_for_state("m", 1, "END", timeout=10)
    r = requests.get(f"{d.rest_url}/v1/models/m/versions/1/metadata", timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "Servable not found for request: Specific(m, 1)"}


def test_predict_row_and_columnar(shared) -> None:
    u = f"{shared.rest_url}/v1/models/m:predict"
    row = requests.post(u, json={"instances": [[1.0], [2.0], [5.0]]}, timeout=5)
    assert row.status_code == 200 and row.headers["Content-Type"] == "application/json"
    assert row.json() == {"predictions": [[2.5], [3.0], [4.5]]}
    col = requests.post(u, json={"inputs": {"x": [[1.0], [2.0]]}}, timeout=5)
    assert col.json() == {"outputs": [[2.5], [3.0]]}
    assert "3.0" in row.text, "whole floats keep '.0'"


def test_predict_by_version_and_label(labelled) -> None:
    u = labelled.rest_url
    body = {"instances": [1.0]}
    assert requests.post(f"{u}/v1/models/m/versions/2:predict", json=body, timeout=5).status_code == 200
    assert requests.post(f"{u}/v1/models/m/labels/stable:predict", json=body, timeout=5).status_code == 200
    missing = requests.post(f"{u}/v1/models/m/versions/3:predict", json=body, timeout=5)
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "Servable not found for request: Specific(m, 3)"},
    )
    label = requests.post(f"{u}/v1/models/m/labels/canary:predict", json=body, timeout=5)
    assert label.status_code == 400
    assert label.json() == {"error": "Unrecognized servable version label: canary"}


@pytest.mark.parametrize("model", ["m", "unknown"])
def test_malformed_json_is_400_before_model_lookup(shared, model: str) -> None:
    u = f"{shared.rest_url}/v1/models/{model}:predict"
    empty = requests.post(u, data=b"", timeout=5)
    assert (empty.status_code, empty.json()) == (400, {"error": "JSON Parse error: The document is empty"})
    bad = requests.post(u, data=b"not json", timeout=5)
    assert bad.status_code == 400
    assert bad.json() == {"error": "JSON Parse error: Invalid value. at offset: 0"}
    array = requests.post(u, data=b"[1]", timeout=5)
    assert array.status_code == 400 and array.json()["error"].endswith(" Is not object")


def test_unknown_model_404_after_valid_json(shared) -> None:
    r = requests.post(f"{shared.rest_url}/v1/models/unknown:predict", json={"instances": [1.0]}, timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "Servable not found for request: Latest(unknown)"}


def test_predict_request_errors(shared) -> None:
    u = f"{shared.rest_url}/v1/models/m:predict"

    def err(body: object) -> tuple[int, str]:
        r = requests.post(u, json=body, timeout=5)
        return r.status_code, r.json()["error"]

    assert err({"signature_name": "serving_default"}) == (400, "Missing 'inputs' or 'instances' key")
    code, message = err({"instances": [1.0], "inputs": [1.0]})
    assert code == 400 and message.endswith(
        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
    )
    code, message = err({"signature_name": 3, "instances": [1.0]})
    assert code == 400
    assert message.endswith("not formatted correctly. 'signature_name' key must be a string value.")
    assert err({"signature_name": "nope", "instances": [1.0]}) == (
        400,
        'Serving signature name: "nope" not found in signature def',
    )
    code, message = err({"instances": ["abc"]})
    assert code == 400 and "is not of expected type: float" in message
    assert err({"inputs": {"z": [1.0]}}) == (400, "Missing named input: x in 'inputs' object.")
    code, message = err({"instances": [16777217]})
    assert code == 400 and "without loss of precision" in message


def test_nan_and_infinity_accepted(shared) -> None:
    r = requests.post(
        f"{shared.rest_url}/v1/models/m:predict", data=b'{"instances": [NaN, Infinity]}', timeout=5
    )
    assert r.status_code == 200 and "NaN" in r.text and "Infinity" in r.text


def test_classify_and_regress(shared) -> None:
    u = f"{shared.rest_url}/v1/models/m"
    reg = requests.post(f"{u}:regress", json={"examples": [{"x": 1.0}, {"x": 4.0}]}, timeout=5)
    assert reg.status_code == 200 and reg.json() == {"results": [2.5, 4.0]}
    cls = requests.post(f"{u}:classify", json={"examples": [{"x": 1.0}]}, timeout=5)
    assert cls.json() == {"results": [[["", 2.5]]]}


def test_classify_parses_whole_body_before_lookup(shared) -> None:
    r = requests.post(f"{shared.rest_url}/v1/models/unknown:classify", json={"context": {}}, timeout=5)
    assert r.status_code == 400
    assert r.json()["error"].endswith("When method is classify, key 'examples' is expected and was not found")
    r = requests.post(
        f"{shared.rest_url}/v1/models/unknown:regress", json={"examples": [{"x": 1.0}]}, timeout=5
    )
    assert r.status_code == 404 and r.json() == {"error": "Servable not found for request: Latest(unknown)"}
