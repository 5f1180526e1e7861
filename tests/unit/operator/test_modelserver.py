"""Reading TF Serving's status answers, judging them against the policy, and polling cheaply."""

from __future__ import annotations

import asyncio

from google.protobuf import json_format
from servedmodel_operator.modelserver import (
    FAST_SECONDS,
    MAX_BACKOFF_SECONDS,
    SETTLE_SECONDS,
    SLOW_SECONDS,
    ModelServerPoller,
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


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_poll_schedule_fast_while_changing_slow_after_and_backoff_when_unreachable():
    clock = FakeClock()
    poller = ModelServerPoller(clock=clock)
    calls = []
    answers = {"ok": True}

    def get(url):
        calls.append(url)
        if not answers["ok"]:
            import requests

            raise requests.ConnectionError("refused")
        return vs((1, "AVAILABLE"))

    poller._get = get
    s = spec()

    async def scenario():
        key = ("ns", "m")
        delays = [await poller.poll(key, s, "gen-1", busy=False)]
        assert delays[0] == FAST_SECONDS  # right after a change
        assert await poller.poll(key, s, "gen-1", busy=False) <= FAST_SECONDS
        assert len(calls) == 1  # not due yet: no request
        clock.now += SETTLE_SECONDS + 1
        slow = await poller.poll(key, s, "gen-1", busy=False)
        assert 0.8 * SLOW_SECONDS <= slow <= 1.2 * SLOW_SECONDS
        assert poller.observed(key) == (vs((1, "AVAILABLE")), "")
        # A spec change asks at once.
        await poller.poll(key, s, "gen-2", busy=False)
        assert len(calls) == 3
        # Unreachable: exponential backoff, capped.
        answers["ok"] = False
        clock.now += SETTLE_SECONDS + 1
        backoffs = []
        for _ in range(10):
            clock.now += 1000
            backoffs.append(await poller.poll(key, s, "gen-2", busy=True))
        assert backoffs[:3] == [FAST_SECONDS, 2 * FAST_SECONDS, 4 * FAST_SECONDS]
        assert max(backoffs) == MAX_BACKOFF_SECONDS
        assert poller.observed(key)[1].startswith("cannot reach the model server")

    asyncio.run(scenario())
    assert calls[0] == "http://m.ns.svc:8501/v1/models/m"
