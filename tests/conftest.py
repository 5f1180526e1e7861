"""Shared fixtures: a real local control plane, the CRD, and the real operator process.

The control plane is started once per test session, only when a test asks for it. If it cannot be built
or started, the tests that need it fail with the reason: they never skip.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chartrights import chart_rules_watching_namespaces, grant_chart_rights, rbac_denials
from kubehelpers import Kube, OperatorProcess
from localcluster import OPERATOR_USER, LocalCluster
from modelfleet import ModelServerFleet
from objectstore import ObjectStore
from realnode import RealNode

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "servedmodel.io_servedmodels.yaml"
# The session operator watches only namespaces named so (the `namespace` fixture's): a test that runs an
# operator of its own on the session cluster (the operator image, Helm, dist/install.yaml, RBAC tests) does so
# in namespaces named otherwise, where no other operator acts.
SESSION_NAMESPACES = "t-"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(workdir=tmp_path_factory.mktemp("controlplane")) as cp:
        yield cp


@pytest.fixture(scope="session")
def real_node(cluster: LocalCluster) -> RealNode:
    """The session cluster's real node (containerd, kubelet, kube-proxy, CoreDNS), started on first use and
    stopped with the cluster. Pods run there only with `real_node.pod_placement()` merged into their spec
    (node selector + toleration); images come from `real_node.import_image(oci_archive, ref)`."""
    return cluster.start_real_node()


def _store_credentials(name: str) -> tuple[str, str]:
    return (f"{name}-{secrets.token_hex(4)}", secrets.token_hex(20))


def _object_store(host: str, folder: Path) -> ObjectStore:
    """A store with fresh admin and read-only credentials; `with` starts it and stops it."""
    return ObjectStore(
        host,
        folder,
        credentials=_store_credentials("admin"),
        read_only_credentials=_store_credentials("reader"),
    )


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A real S3-compatible server (SeaweedFS, tools/controlplane/objectstore.py) on 127.0.0.1, anonymous
    access off. `.endpoint`, `.access_key`/`.secret_key` (every right), `.read_only_credentials` (read +
    list), `.client()`, `.env()` (AWS_* variables for a subprocess), `.create_bucket(name)`. Tests use
    buckets of their own (the `bucket` fixture). Built from the Go module proxy on first use (cached); never
    skipped."""
    with _object_store("127.0.0.1", tmp_path_factory.mktemp("objectstore")) as store:
        yield store


@pytest.fixture(scope="session")
def node_object_store(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """As `object_store`, but bound to the real node's host-side address 10.200.N.1 (where the API server
    listens too), so pods on the real node reach it at `.endpoint`; never 0.0.0.0."""
    with _object_store(real_node.slot.host_ip, tmp_path_factory.mktemp("node-objectstore")) as store:
        yield store


@pytest.fixture
def bucket(object_store: ObjectStore) -> str:
    """A new bucket of the test's own in `object_store`."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    object_store.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def node_image(real_node: RealNode) -> Callable[[str], str]:
    """`node_image("operator")`: our image of that name, built from its Dockerfile by tools/images (cached by
    its inputs) and imported into the real node's runtime; returns the reference pods name (with
    `imagePullPolicy: Never` or `IfNotPresent`). Each image is imported once per session."""
    import images

    imported: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in imported:
            built = images.build(name)
            imported[name] = real_node.import_image(built.archive, built.ref)
        return imported[name]

    return get


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> Kube:
    """kubectl as cluster admin."""
    return Kube(cluster)


@pytest.fixture(scope="session")
def crd(kube: Kube) -> None:
    kube.kubectl("apply", "--server-side", "-f", str(CRD))
    kube.wait_established("servedmodels.servedmodel.io")


@pytest.fixture(scope="session")
def operator_rbac(kube: Kube) -> None:
    """The operator's identity gets exactly the rules of the Helm chart's ClusterRole (rendered by helm, with
    the rule it adds for watched namespaces), so every path the integration tests take is also a proof of
    the chart's least privilege."""
    rules = chart_rules_watching_namespaces()
    grant_chart_rights(kube.kubectl, OPERATOR_USER, "servedmodel-operator-test", rules)


@pytest.fixture(scope="session")
def model_servers(cluster: LocalCluster) -> Iterator[ModelServerFleet]:
    """What answers the operator's model-server polls (kwok runs no TF Serving): see tests/modelfleet.py."""
    fleet = ModelServerFleet(cluster)
    yield fleet
    fleet.close()


@pytest.fixture(scope="session")
def operator(
    cluster: LocalCluster,
    crd: None,
    operator_rbac: None,
    model_servers: ModelServerFleet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    # A short resync so the tests can watch the level-based safety net do (nothing) in seconds.
    # No kubelet runs TF Serving here: the fleet answers for every model server, and relays to a TF Serving
    # test double on loopback for a ServedModel whose REST port names one (the tests give each its own port).
    op = OperatorProcess(
        cluster.operator_kubeconfig,
        log_path,
        ["--verbose", f"--namespace={SESSION_NAMESPACES}*"],
        {"SERVEDMODEL_RESYNC_SECONDS": "4", "SERVEDMODEL_MODEL_SERVER_URL": model_servers.url_template},
    )
    try:
        op.wait_live()
        yield op
    finally:
        op.stop()
        print(f"\n--- operator log tail ---\n{op.tail(3000)}")
    # Every write of the operator is audited: none may have been refused for lack of a right.
    denied = rbac_denials(cluster.audited_writes(OPERATOR_USER))
    assert denied == [], (
        f"the chart's rules refused the operator {len(denied)} times: {sorted(set(denied))[:5]}"
    )


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A namespace the session operator watches, deleted after the test."""
    name = f"{SESSION_NAMESPACES}{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)
