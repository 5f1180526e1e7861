"""Every child name the operator renders, for every ServedModel name the CRD accepts, is valid for its kind.

The name space is the CRD's own rule (tested against the API server in test_crd.py): a DNS label of at most
63 characters. The checks are Kubernetes' validation rules, written out here (not the operator's code):
Service and Job names are DNS-1035 labels of at most 63 characters (a Job's name is also a label value of
its pods), every other name a DNS-1123 subdomain, every label value at most 63 characters.
"""

from __future__ import annotations

import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from servedmodel_operator.render import render
from servedmodel_operator.render_export import render_export_job
from servedmodel_operator.spec import parse

DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KINDS = {"Service", "Job"}  # names that must be DNS labels of at most 63


@st.composite
def accepted_names(draw) -> str:
    """What the CRD accepts: a lowercase letter, then letters, digits and '-', not ending with '-';
    biased towards the long names where suffixes stop fitting."""
    size = draw(st.one_of(st.integers(1, 63), st.integers(45, 63)))
    if size == 1:
        return draw(st.sampled_from(string.ascii_lowercase))
    inner = string.ascii_lowercase + string.digits + "-"
    middle = draw(st.text(inner, min_size=size - 2, max_size=size - 2))
    last = draw(st.sampled_from(string.ascii_lowercase + string.digits))
    return draw(st.sampled_from(string.ascii_lowercase)) + middle + last


def everything(name: str) -> list[dict]:
    """Every kind of child at once: canary, HPA, PDB, ServiceMonitor, export Job."""
    spec = parse(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {
                "storage": {"persistentVolumeClaim": {"claimName": "models"}},
                "versionPolicy": {"specific": {"versions": [1]}},
                "canary": {"version": 2},
                "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
                "monitoring": {"prometheus": {"enabled": True}, "serviceMonitor": {"enabled": True}},
                "export": {"source": {"path": "in/model.keras"}},
            },
        }
    )
    return [*render(spec, service_monitor_api=True), render_export_job(spec)]


def label_values(obj: dict) -> list[str]:
    values = list((obj["metadata"].get("labels") or {}).values())
    spec = obj.get("spec") or {}
    values += list(((spec.get("selector") or {}).get("matchLabels") or {}).values())
    values += list((((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}).values())
    if obj["kind"] == "Job":
        values.append(obj["metadata"]["name"])  # batch.kubernetes.io/job-name on its pods
    return values


@settings(max_examples=400, deadline=None)
@given(accepted_names())
def test_every_child_name_is_valid_for_its_kind(name):
    objects = everything(name)
    kinds = {o["kind"] for o in objects}
    assert kinds == {
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "Job",
    }
    for obj in objects:
        child = obj["metadata"]["name"]
        if obj["kind"] in LABEL_KINDS:
            assert len(child) <= 63 and DNS_1035_LABEL.match(child), (obj["kind"], child)
        else:
            assert len(child) <= 253 and DNS_1123_SUBDOMAIN.match(child), (obj["kind"], child)
        for value in label_values(obj):
            assert len(value) <= 63 and LABEL_VALUE.match(value), (obj["kind"], value)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), names  # no two children of one kind share a name


@settings(max_examples=200, deadline=None)
@given(accepted_names(), accepted_names())
def test_two_servedmodels_never_share_a_shortened_name(a, b):
    if a == b:
        return
    ours = {(o["kind"], o["metadata"]["name"]) for o in everything(a)}
    theirs = {(o["kind"], o["metadata"]["name"]) for o in everything(b)}
    # Only a ServedModel's own name can be shared (a ServedModel named "x-canary" beside "x" with a canary:
    # a clash of the naming scheme itself, not of the shortening); shortened names never collide.
    same = ours & theirs
    assert all(n in (a, b) for _, n in same), same


def test_names_that_fit_are_unchanged_and_long_ones_keep_their_suffix():
    short = {(o["kind"], o["metadata"]["name"]) for o in everything("iris")}
    assert {("Service", "iris"), ("Service", "iris-stable"), ("Service", "iris-canary")} <= short
    assert {("ConfigMap", "iris-config"), ("ConfigMap", "iris-canary-config")} <= short
    assert ("Deployment", "iris-canary") in short
    longest = "m" * 63
    services = {o["metadata"]["name"] for o in everything(longest) if o["kind"] == "Service"}
    assert longest in services and {len(s) for s in services} == {63}
    canary, stable = sorted(services - {longest})
    assert canary.endswith("-canary") and stable.endswith("-stable")
    assert canary.startswith("m" * 47 + "-") and stable.startswith("m" * 47 + "-")  # a prefix, then the hash
