"""Autoscaling, disruption budgets, batching and monitoring on the real control plane, including the
optional children disappearing when the spec stops asking for them."""

from __future__ import annotations

import subprocess
import threading

import pytest
from kubehelpers import eventually, pvc, servedmodel

pytestmark = pytest.mark.integration

# Just enough of the Prometheus Operator's CRD for its API to exist, as once that operator is installed.
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names:
    {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def test_autoscaling_hpa_pdb_and_back(kube, operator, namespace):
    kube.apply(pvc("models", namespace))
    kube.apply(
        servedmodel(
            "scaled",
            namespace,
            resources={"requests": {"cpu": "1"}},
            autoscaling={"minReplicas": 2, "maxReplicas": 5},
        )
    )
    hpa = eventually(lambda: kube.get("hpa", "scaled", namespace), what="HPA")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "scaled"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    pdb = eventually(lambda: kube.get("pdb", "scaled", namespace), what="PDB")
    assert pdb["spec"]["maxUnavailable"] == 1

    # The autoscaler (played here by hand: no metrics server runs) sets replicas; the operator leaves them be.
    kube.kubectl("-n", namespace, "scale", "deployment", "scaled", "--replicas=4")
    sm = kube.wait_until(
        "servedmodel",
        "scaled",
        namespace,
        lambda sm: sm.get("status", {}).get("replicas") == 4,
        what="status follows the HPA",
    )
    assert kube.get("deployment", "scaled", namespace)["spec"]["replicas"] == 4
    kube.wait_condition(
        "servedmodel", "scaled", namespace, "Ready", status="True", what="Ready at 4 replicas"
    )
    assert sm["status"]["observedGeneration"] == sm["metadata"]["generation"]

    # Back to a fixed count of one: the operator owns replicas again, and deletes the HPA and the PDB.
    kube.apply(servedmodel("scaled", namespace, resources={"requests": {"cpu": "1"}}, replicas=1))
    eventually(
        lambda: kube.get("hpa", "scaled", namespace) is None and kube.get("pdb", "scaled", namespace) is None,
        what="HPA and PDB deleted",
    )
    eventually(
        lambda: kube.get("deployment", "scaled", namespace)["spec"]["replicas"] == 1, what="replicas=1"
    )
    assert "Deleted" in [e["reason"] for e in kube.events(namespace, "scaled")]


class ReplicaSampler:
    """Every value of a Deployment's spec.replicas, as a watch sees it (each stored change, none missed)."""

    def __init__(self, kube, namespace: str, name: str):
        cluster = kube.cluster
        self.proc = subprocess.Popen(
            [
                str(cluster.bin_dir / "kubectl"),
                f"--kubeconfig={cluster.kubeconfig}",
                "get",
                "deployment",
                name,
                "-n",
                namespace,
                "--watch",
                "-o",
                'jsonpath={.metadata.resourceVersion} {.spec.replicas}{"\\n"}',
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.samples: list[tuple[int, int]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        eventually(lambda: self.samples, timeout=20, what="the watch's first event")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            version, _, replicas = line.strip().partition(" ")
            if version and replicas:
                self.samples.append((int(version), int(replicas)))

    def stop(self) -> list[int]:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        return [replicas for _, replicas in self.samples]


def test_turning_autoscaling_on_and_off_never_drops_replicas(kube, operator, namespace):
    """The hand-over of spec.replicas between the operator and the HPA (Kubernetes' server-side apply
    "transferring ownership"): sampled by a watch, the Deployment's replicas never fall below what runs."""
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("handover", namespace, replicas=3))
    kube.wait_condition(
        "servedmodel", "handover", namespace, "Ready", status="True", timeout=90, what="Ready at 3 replicas"
    )

    sampler = ReplicaSampler(kube, namespace, "handover")
    try:
        kube.apply(
            servedmodel("handover", namespace, replicas=3, autoscaling={"minReplicas": 2, "maxReplicas": 5})
        )
        eventually(lambda: kube.get("hpa", "handover", namespace), what="HPA")
        # The HPA controller has synced once it wrote its conditions (no metrics server runs, so it only keeps
        # the replicas between min and max).
        eventually(
            lambda: (kube.get("hpa", "handover", namespace).get("status") or {}).get("conditions"),
            timeout=60,
            what="the HPA's first sync",
        )
        eventually(lambda: _current(kube, namespace, "handover"), what="status of the autoscaled generation")
    finally:
        on = sampler.stop()
    assert on and set(on) == {3}, f"spec.replicas through the switch to autoscaling: {on}"
    assert kube.get("deployment", "handover", namespace)["spec"]["replicas"] == 3

    sampler = ReplicaSampler(kube, namespace, "handover")
    try:
        kube.apply(servedmodel("handover", namespace, replicas=4))  # autoscaling off: a fixed count again
        eventually(lambda: kube.get("hpa", "handover", namespace) is None, what="HPA deleted")
        eventually(
            lambda: kube.get("deployment", "handover", namespace)["spec"]["replicas"] == 4, what="replicas=4"
        )
    finally:
        off = sampler.stop()
    assert set(off) <= {3, 4} and off[-1] == 4, f"spec.replicas through the switch back: {off}"


def _current(kube, namespace: str, name: str) -> bool:
    sm = kube.get("servedmodel", name, namespace)
    return (sm.get("status") or {}).get("observedGeneration") == sm["metadata"]["generation"]


def test_batching_and_monitoring_with_a_service_monitor(kube, operator, namespace):
    kube.apply(SERVICE_MONITOR_CRD)
    kube.wait_established("servicemonitors.monitoring.coreos.com")
    kube.apply(pvc("models", namespace))
    kube.apply(
        servedmodel(
            "obs",
            namespace,
            batching={"maxBatchSize": 16, "allowedBatchSizes": [4, 16]},
            monitoring={"serviceMonitor": {"interval": "15s"}},
        )
    )
    cm = eventually(lambda: kube.get("configmap", "obs-config", namespace), what="ConfigMap")
    assert "max_batch_size { value: 16 }" in cm["data"]["batching.config"]
    assert 'path: "/monitoring/prometheus/metrics"' in cm["data"]["monitoring.config"]
    args = kube.get("deployment", "obs", namespace)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        "--enable_batching" in args and "--monitoring_config_file=/etc/servedmodel/monitoring.config" in args
    )
    svc = kube.get("service", "obs", namespace)
    assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    # The operator watches for that CRD, so the monitor follows without waiting for a discovery refresh.
    monitor = eventually(
        lambda: kube.get("servicemonitors.monitoring.coreos.com", "obs", namespace),
        timeout=30,
        what="ServiceMonitor",
    )
    assert monitor["spec"]["endpoints"][0] == {
        "port": "rest",
        "path": "/monitoring/prometheus/metrics",
        "interval": "15s",
    }

    kube.apply(servedmodel("obs", namespace))  # monitoring removed
    eventually(
        lambda: kube.get("servicemonitors.monitoring.coreos.com", "obs", namespace) is None,
        what="ServiceMonitor deleted",
    )
    eventually(
        lambda: (
            "prometheus.io/scrape"
            not in (kube.get("service", "obs", namespace)["metadata"].get("annotations") or {})
        ),
        what="scrape annotations removed",
    )


def test_gpu_model_server_gets_the_gpu_image_and_lands_on_a_gpu_node(kube, operator, namespace):
    """The local node advertises nvidia.com/gpu (kwok), so the scheduler can place a GPU pod for real."""
    kube.apply(pvc("models", namespace))
    kube.apply(
        servedmodel(
            "gpu",
            namespace,
            resources={"limits": {"nvidia.com/gpu": 1}},
            nodeSelector={"kubernetes.io/os": "linux"},
        )
    )
    dep = eventually(lambda: kube.get("deployment", "gpu", namespace), what="Deployment")
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["image"].endswith("-gpu")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    kube.wait_condition("servedmodel", "gpu", namespace, "Ready", status="True", timeout=90)
    (pod,) = [
        p
        for p in kube.list("pods", namespace, "app.kubernetes.io/instance=gpu")
        if p["status"].get("phase") == "Running"
    ]
    assert pod["spec"]["nodeName"] == "kwok-node-0"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
