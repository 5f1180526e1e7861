"""The spec view re-checks what the renderer relies on, with messages users can act on."""

from __future__ import annotations

import pytest
from servedmodel_operator.spec import InvalidSpec, parse


def body(name="m", **spec):
    base = {"storage": {"persistentVolumeClaim": {"claimName": "models"}}}
    base.update(spec)
    return {"metadata": {"name": name, "namespace": "ns", "uid": "u"}, "spec": base}


def test_defaults():
    s = parse(body())
    assert s.model_name == "m"
    assert s.version_policy.summary() == "latest:1"
    assert (s.grpc_port, s.rest_port, s.replicas, s.claim_read_only) == (8500, 8501, 1, True)
    assert s.base_path == "/models"


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"ports": {"grpc": 8500, "rest": 8500}}, "must differ"),
        ({"versionPolicy": {"latest": {}, "all": {}}}, "exactly one"),
        ({"versionPolicy": {"specific": {"versions": []}}}, "at least one"),
        (
            {"versionPolicy": {"specific": {"versions": [1]}}, "versionLabels": {"stable": 2}},
            "does not serve",
        ),
        ({"versionLabels": {"bad-label": 1}}, "letters, digits"),
        (
            {"storage": {"persistentVolumeClaim": {"claimName": "x"}, "path": "/abs"}},
            "must not start with '/'",
        ),
        ({"storage": {"persistentVolumeClaim": {"claimName": "x"}, "path": "a/../b"}}, "'..'"),
        ({"storage": {"persistentVolumeClaim": {}}}, "claimName is required"),
        ({"server": {"extraArgs": ["--rest_api_port=1"]}}, "operator manages"),
        ({"server": {"extraArgs": ["oops"]}}, "starting with '--'"),
        ({"podLabels": {"app.kubernetes.io/name": "x"}}, "operator owns"),
        ({"replicas": -1}, "between 0 and 1000"),
        ({"modelName": "has space"}, "letters, digits"),
    ],
)
def test_invalid_specs_say_what_to_change(spec, message):
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(")):
        parse(body(**spec))


def test_names_must_be_dns_labels_as_they_name_the_service():
    for name in ("my.model", "A", "9lives", "a" * 64):
        with pytest.raises(InvalidSpec, match="DNS label"):
            parse(body(name=name))


def test_policy_summaries():
    assert parse(body(versionPolicy={"specific": {"versions": [3, 1, 3]}})).version_policy.summary() == "1,3"
    assert parse(body(versionPolicy={"all": {}})).version_policy.summary() == "all"
