"""The operator's own check of who may run what (the same rules as the chart's admission policy)."""

from __future__ import annotations

import pytest
from servedmodel_operator.policy import Policy
from servedmodel_operator.settings import Settings
from servedmodel_operator.spec import parse

RULES = Policy(
    image_prefixes=("tensorflow/serving:", "ghcr.io/servedmodel/servedmodel-exporter:"),
    service_accounts=("default", "model-reader"),
)


def body(**spec):
    base = {"storage": {"persistentVolumeClaim": {"claimName": "models"}}}
    base.update(spec)
    return {"metadata": {"name": "m", "namespace": "ml"}, "spec": base}


def test_defaults_are_allowed():
    assert RULES.violations(parse(body())) == []
    assert RULES.violations(parse(body(export={"source": {"path": "in/m.keras"}}))) == []
    gpu = parse(body(resources={"limits": {"nvidia.com/gpu": 1}}))  # tensorflow/serving:<release>-gpu
    assert RULES.violations(gpu) == []
    assert RULES.violations(parse(body(serviceAccountName="model-reader"))) == []


def test_each_broken_rule_is_named():
    spec = parse(
        body(
            image="evil.example/miner:1",
            serviceAccountName="cluster-admin-sa",
            export={"source": {"path": "in/m.keras"}, "image": "evil.example/exporter:1"},
        )
    )
    assert RULES.violations(spec) == [
        "spec.image 'evil.example/miner:1' is not allowed by the allowedImagePrefixes rule: images must "
        "start with one of tensorflow/serving:, ghcr.io/servedmodel/servedmodel-exporter:",
        "spec.export.image 'evil.example/exporter:1' is not allowed by the allowedImagePrefixes rule: images "
        "must start with one of tensorflow/serving:, ghcr.io/servedmodel/servedmodel-exporter:",
        "spec.serviceAccountName 'cluster-admin-sa' is not allowed by the allowedServiceAccounts rule: "
        "allowed are default, model-reader",
    ]


def test_a_prefix_is_a_prefix_of_the_whole_reference():
    # "tensorflow/serving:" does not let "tensorflow/serving-evil" in: the separator is part of the prefix.
    assert len(RULES.violations(parse(body(image="tensorflow/serving-evil:1")))) == 1


def test_the_operators_default_image_is_checked_too():
    only_mirror = Policy(image_prefixes=("mirror.internal/",))
    (problem,) = only_mirror.violations(parse(body()))
    assert problem.startswith(
        "spec.image 'tensorflow/serving:2.21.0' (the operator's default) is not allowed"
    )


def test_empty_rules_allow_anything():
    spec = parse(body(image="anything:1", serviceAccountName="whoever"))
    assert Policy().violations(spec) == []


@pytest.mark.parametrize(
    "raw,expected",
    [("", ()), ("a/, b: ,,", ("a/", "b:")), ("default", ("default",))],
)
def test_settings_read_comma_separated_lists(monkeypatch, raw, expected):
    monkeypatch.setenv("SERVEDMODEL_ALLOWED_IMAGE_PREFIXES", raw)
    monkeypatch.setenv("SERVEDMODEL_ALLOWED_SERVICE_ACCOUNTS", raw)
    settings = Settings.from_env()
    assert settings.allowed_image_prefixes == expected == settings.allowed_service_accounts
