"""Access modes against what a ServedModel mounts: which claims conflict, and the advice given."""

from __future__ import annotations

from servedmodel_operator.spec import parse
from servedmodel_operator.storage_access import access_conflict


def spec(**fields):
    body = {"storage": {"persistentVolumeClaim": {"claimName": "models"}}, **fields}
    return parse({"metadata": {"name": "m", "namespace": "ns", "uid": "u"}, "spec": body})


EXPORT = {"source": {"path": "in/m.keras"}}


def test_read_write_many_fits_everything():
    assert access_conflict(spec(replicas=5, export=EXPORT), ["ReadWriteMany"]) is None
    assert access_conflict(spec(replicas=5), []) is None  # unknown (not bound yet): nothing said


def test_read_write_once_with_several_pods():
    assert access_conflict(spec(replicas=1), ["ReadWriteOnce"]) is None
    reason, message = access_conflict(spec(replicas=3), ["ReadWriteOnce"])
    assert reason == "ReadWriteOnceClaim"
    assert (
        "PersistentVolumeClaim 'models' is ReadWriteOnce" in message
        and "3 model server pods use it" in message
    )
    assert "Multi-Attach" in message and "ReadWriteMany" in message
    reason, message = access_conflict(spec(replicas=1, export=EXPORT), ["ReadWriteOnce"])
    assert reason == "ReadWriteOnceClaim" and "1 model server pod and the export Job" in message
    # Every pod pinned to one node: a ReadWriteOnce volume serves them all.
    pinned = spec(replicas=3, export=EXPORT, nodeSelector={"kubernetes.io/hostname": "n1"})
    assert access_conflict(pinned, ["ReadWriteOnce"]) is None
    # The autoscaler may add replicas up to its maximum.
    reason, _ = access_conflict(spec(autoscaling={"minReplicas": 1, "maxReplicas": 4}), ["ReadWriteOnce"])
    assert reason == "ReadWriteOnceClaim"


def test_read_write_once_pod_and_read_only_many():
    assert access_conflict(spec(replicas=1), ["ReadWriteOncePod"]) is None
    reason, message = access_conflict(spec(replicas=1, export=EXPORT), ["ReadWriteOncePod"])
    assert reason == "ReadWriteOncePodClaim" and "one pod in the cluster may use it" in message
    assert access_conflict(spec(replicas=9), ["ReadOnlyMany"]) is None
    reason, message = access_conflict(spec(replicas=1, export=EXPORT), ["ReadOnlyMany"])
    assert reason == "ReadOnlyClaimForExport" and "the export Job cannot write" in message
