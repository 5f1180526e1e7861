"""Reading TF Serving's status answers, judging them against the policy, and polling cheaply."""

from __future__ import annotations

from google.protobuf import json_format
from servedmodel_operator.modelserver import (
    VersionState,
    parse_model_status,
    serving_verdict,
)
from servedmodel_operator.spec import parse


def status_json(*versions):
    """The body TF Serving sends: the official proto through the JSON mapping (reference 1.4)."""
    from tensorflow_serving.apis import get_model_status_pb2

    resp = get_model_status_pb2.GetModelStatusResponse()
    for version, state, code, message in versions:
        entry = resp.model_version_status.add(version=version, state=state)
        entry.status.error_code = code
        entry.status.error_message = message
    return json_format.MessageToDict(resp, always_print_fields_with_no_presence=True)


def spec(policy=None):
    body = {
        "metadata": {"name": "m", "namespace": "ns", "uid": "u"},
        "spec": {"storage": {"persistentVolumeClaim": {"claimName": "c"}}},
    }
    if policy:
        body["spec"]["versionPolicy"] = policy
    return parse(body)


def test_parses_the_official_json_mapping():
    payload = status_json((2, 20, 0, ""), (1, 30, 0, ""), (3, 50, 5, "Could not find SavedModel .pb"))
    assert payload["model_version_status"][0]["version"] == "2"  # int64 is a JSON string
    versions = parse_model_status(payload)
    assert [(v.version, v.state) for v in versions] == [(3, "END"), (2, "LOADING"), (1, "AVAILABLE")]
    assert versions[0].failed and versions[0].error_code == "NOT_FOUND"
    assert versions[0].to_status() == {
        "version": 3,
        "state": "END",
        "error": "NOT_FOUND: Could not find SavedModel .pb",
    }
    assert not versions[2].failed and versions[2].to_status() == {"version": 1, "state": "AVAILABLE"}


def vs(*pairs):
    return [VersionState(v, s) for v, s in pairs]


def test_verdicts_follow_the_policy():
    assert serving_verdict(spec(), vs((1, "AVAILABLE")))[:2] == (True, "ModelServing")
    assert serving_verdict(spec(), vs((1, "LOADING")))[:2] == (False, "NoVersionAvailable")
    assert serving_verdict(spec(), [])[:2] == (False, "NoVersionAvailable")
    ok, reason, message = serving_verdict(
        spec({"specific": {"versions": [1, 2]}}), vs((2, "LOADING"), (1, "AVAILABLE"))
    )
    assert (ok, reason) == (False, "VersionsNotAvailable") and "2 is LOADING" in message
    ok, _, message = serving_verdict(
        spec({"latest": {"numVersions": 2}}), vs((2, "LOADING"), (1, "AVAILABLE"))
    )
    assert ok and "loading 2" in message
    assert serving_verdict(spec({"all": {}}), vs((5, "AVAILABLE"), (4, "END")))[0]
