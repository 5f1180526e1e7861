"""The pods the operator causes to exist pass the Pod Security Standard `restricted`, ENFORCED by the API
server's PodSecurity admission on the namespace: the ReplicaSet and Job controllers' pod creates would
fail (FailedCreate) otherwise. A privileged pod in the same namespace is refused, proving enforcement."""

from __future__ import annotations

import json

import pytest
from exportjobs import export_jobs, job_pods, wait_export
from kubehelpers import eventually, pvc, servedmodel

pytestmark = pytest.mark.integration


@pytest.fixture
def restricted(kube, namespace):
    kube.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    kube.apply(pvc("models", namespace))
    # The control: a pod that breaks `restricted` is refused here.
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    proc = kube.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0 and "violates PodSecurity" in proc.stderr, proc.stderr
    return namespace


def _failed_creates(kube, namespace: str) -> list[str]:
    return [
        f"{e['involvedObject']['kind']} {e['involvedObject']['name']}: {e['message']}"
        for e in kube.list("events", namespace)
        if e["reason"] == "FailedCreate"
    ]


def test_model_server_pods_pass_restricted(kube, operator, restricted):
    ns = restricted
    kube.apply(
        servedmodel(
            "secure",
            ns,
            replicas=2,
            env=[{"name": "A", "value": "b"}],
            resources={"requests": {"cpu": "100m"}},
        )
    )
    sm = kube.wait_condition(
        "servedmodel",
        "secure",
        ns,
        "Ready",
        status="True",
        timeout=90,
        what="Ready in a restricted namespace",
    )
    assert sm["status"]["readyReplicas"] == 2
    pods = kube.list("pods", ns, "app.kubernetes.io/instance=secure")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    (rs,) = [r for r in kube.list("replicasets", ns, "app.kubernetes.io/instance=secure")]
    assert not [c for c in (rs.get("status") or {}).get("conditions") or [] if c["type"] == "ReplicaFailure"]
    assert _failed_creates(kube, ns) == []


def test_export_job_pods_pass_restricted(kube, operator, restricted):
    ns = restricted
    kube.apply(servedmodel("exp", ns, export={"source": {"path": "incoming/exp.keras"}}))

    def job_pod():
        jobs = export_jobs(kube, ns)
        assert len(jobs) == 1, jobs
        assert _failed_creates(kube, ns) == []
        pods = job_pods(kube, ns, jobs[0]["metadata"]["name"])
        assert pods, "no export pod yet"
        return pods[0]

    pod = eventually(job_pod, timeout=90, what="export Job pod created under restricted")
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    wait_export(kube, ns, "exp", lambda r: r.get("phase") == "Succeeded", "export Job finished")
    assert _failed_creates(kube, ns) == []
