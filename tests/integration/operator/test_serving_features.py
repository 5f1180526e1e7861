"""Autoscaling, disruption budgets, batching and monitoring on the real control plane, including the
optional children disappearing when the spec stops asking for them."""

from __future__ import annotations

import pytest
from kubehelpers import condition, eventually, pvc, servedmodel

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
    sm = eventually(
        lambda: (
            (kube.get("servedmodel", "scaled", namespace) or {}).get("status", {}).get("replicas") == 4
            and kube.get("servedmodel", "scaled", namespace)
        ),
        what="status follows the HPA",
    )
    assert kube.get("deployment", "scaled", namespace)["spec"]["replicas"] == 4
    eventually(
        lambda: condition(kube.get("servedmodel", "scaled", namespace), "Ready").get("status") == "True",
        timeout=60,
        what="Ready at 4 replicas",
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
    eventually(
        lambda: condition(kube.get("servedmodel", "gpu", namespace), "Ready").get("status") == "True",
        timeout=90,
        what="Ready",
    )
    (pod,) = [
        p
        for p in kube.list("pods", namespace, "app.kubernetes.io/instance=gpu")
        if p["status"].get("phase") == "Running"
    ]
    assert pod["spec"]["nodeName"] == "kwok-node-0"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
