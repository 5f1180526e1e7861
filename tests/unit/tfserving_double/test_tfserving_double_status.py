"""Reference §1.4 / checklist 2, 3, 4, 7: model status JSON, version and label routes, error bodies."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from google.protobuf import json_format
from tfsd_helpers import add_version, wait_until

EXPECTED_SINGLE = """{
 "model_version_status": [
  {
   "version": "1",
   "state": "AVAILABLE",
   "status": {
    "error_code": "OK",
    "error_message": ""
   }
  }
 ]
}"""


def _status_pb2():
    """Imported lazily: it pulls in TensorFlow, which must not happen while pytest collects other folders."""
    from tensorflow_serving.apis import get_model_status_pb2

    return get_model_status_pb2


def _roundtrip(text: str):
    """The body must be valid protobuf JSON of the official GetModelStatusResponse."""
    return json_format.Parse(text, _status_pb2().GetModelStatusResponse())


def test_status_json_exact_shape(shared) -> None:
    r = requests.get(f"{shared.rest_url}/v1/models/m", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == json.loads(EXPECTED_SINGLE)
    assert r.text.strip() == EXPECTED_SINGLE  # 1-space indent, json_name keys, int64 as string
    msg = _roundtrip(r.text)
    assert msg.model_version_status[0].version == 1
    assert msg.model_version_status[0].state == _status_pb2().ModelVersionStatus.AVAILABLE


def test_versions_descending_and_end_versions_kept(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base)).start(timeout=15)
    add_version(base, 2)
    assert d.wait_for_state("m", 1, "END", timeout=10), "latest policy: version 1 is unloaded"
    add_version(base, 11, loadable=False)  # numeric order, not string order: 11 > 2
    assert d.wait_for_state("m", 11, "END", timeout=10)
    body = requests.get(f"{d.rest_url}/v1/models/m", timeout=5).json()
    versions = [s["version"] for s in body["model_version_status"]]
    assert versions == sorted(versions, key=int, reverse=True) and set(versions) == {"11", "2", "1"}
    by_version = {s["version"]: s for s in body["model_version_status"]}
    ok = {"error_code": "OK", "error_message": ""}
    assert by_version["1"] == {"version": "1", "state": "END", "status": ok}
    assert by_version["11"]["state"] == "END" and by_version["11"]["status"]["error_code"] == "NOT_FOUND"
    assert "Could not find SavedModel" in by_version["11"]["status"]["error_message"]
    assert by_version["2"]["state"] == "AVAILABLE", "failed newer version: old one keeps serving"
    parsed = _roundtrip(json.dumps(body))
    assert [s.version for s in parsed.model_version_status] == [11, 2, 1]


def test_loading_state_reported_with_200(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base), load_delay_seconds=0.6)
    d.start(timeout=15)
    add_version(base, 2)
    assert d.wait_for_state("m", 2, "LOADING", timeout=10)
    r = requests.get(f"{d.rest_url}/v1/models/m/versions/2", timeout=5)
    assert r.status_code == 200
    assert r.json()["model_version_status"] == [
        {"version": "2", "state": "LOADING", "status": {"error_code": "OK", "error_message": ""}}
    ]
    assert d.wait_for_state("m", 2, "AVAILABLE", timeout=10)


def test_unknown_model_404(shared) -> None:
    r = requests.get(f"{shared.rest_url}/v1/models/nope", timeout=5)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"error": "Could not find any versions of model nope"}


def test_version_route(shared) -> None:
    ok = requests.get(f"{shared.rest_url}/v1/models/m/versions/1", timeout=5)
    assert ok.status_code == 200 and _roundtrip(ok.text).model_version_status[0].version == 1
    leading_zero = requests.get(f"{shared.rest_url}/v1/models/m/versions/0001", timeout=5)
    assert leading_zero.json() == ok.json()
    missing = requests.get(f"{shared.rest_url}/v1/models/m/versions/3", timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"error": "Could not find version 3 of model m"}


def test_label_route_ignores_the_label(shared) -> None:
    """The status endpoint never resolves labels: unknown label = all versions, 200."""
    plain = requests.get(f"{shared.rest_url}/v1/models/m", timeout=5)
    labelled = requests.get(f"{shared.rest_url}/v1/models/m/labels/no-such-label", timeout=5)
    assert labelled.status_code == 200 and labelled.json() == plain.json()


def test_error_body_format(shared) -> None:
    r = requests.get(f"{shared.rest_url}/v1/models/nope", timeout=5)
    # rapidjson PrettyWriter layout
    assert r.text == '{\n    "error": "Could not find any versions of model nope"\n}'


def test_removed_model_keeps_its_end_versions(make_double, base: Path, tmp_path: Path) -> None:
    from tfsd_helpers import model_config

    add_version(base, 1)
    other = tmp_path / "o"
    add_version(other, 1)
    cfg = tmp_path / "models.config"
    cfg.write_text(model_config({"name": "m", "base_path": base}, {"name": "o", "base_path": other}))
    d = make_double(model_config_file=str(cfg)).start(timeout=15)
    cfg.write_text(model_config({"name": "o", "base_path": other}))
    assert d.reload_config_now() is None
    assert wait_until(lambda: d.manager.version_states("m")[1].state == "END", timeout=5)
    r = requests.get(f"{d.rest_url}/v1/models/m", timeout=5)
    assert r.status_code == 200 and r.json()["model_version_status"][0]["state"] == "END"
    meta = requests.get(f"{d.rest_url}/v1/models/m/metadata", timeout=5)
    assert meta.status_code == 404 and meta.json() == {"error": "Servable not found for request: Latest(m)"}
