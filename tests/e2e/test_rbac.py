"""The chart's least-privilege RBAC, proven with the real operator process running as the chart's
ServiceAccount (a `kubectl create token` token), in both watch scopes, with the API server's audit log as the
witness: every request that identity made is audited, reads included (see AUDIT_POLICY in
tools/controlplane/localcluster.py), so "zero 403" covers everything kopf and the operator did.

Only this identity's requests are judged. Another operator process (tests/conftest.py's `operator`, with
the same chart rules bound to its test identity) may be running in the same session and act on the same
objects; that is harmless (same field manager, same content), and it cannot hide a 403 of ours. It can only
make the negative test's Ready=False check race, which is why that check is made only when no other operator
wrote in the test's namespace.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from e2ehelpers import (
    CHART,
    RBAC_NAMESPACE,
    UserTools,
    audit_events,
    describe,
    ensure_namespace,
    service_account_kubeconfig,
    wait_for,
)
from kubehelpers import condition, eventually, pvc, servedmodel
from localcluster import OPERATOR_USER, LocalCluster

RELEASE = "rbac"
SA = "servedmodel-operator"  # fullnameOverride, so the audited username is stable
USERNAME = f"system:serviceaccount:{RBAC_NAMESPACE}:{SA}"


# The groups the API server gives the ServiceAccount's token: a SubjectAccessReview naming them is judged
# exactly as the operator's own requests are.
GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{RBAC_NAMESPACE}", "system:authenticated"]

# verb, group, resource[/subresource][:name] (a rule limited to resourceNames), namespace (None: all)
Permission = tuple[str, str, str, "str | None"]


def release_permissions(admin: UserTools) -> list[Permission]:
    """Every rule of the release's ClusterRole and Roles, as Helm installed them."""
    out: list[Permission] = []
    for obj in yaml.safe_load_all(admin.helm("get", "manifest", RELEASE, "-n", RBAC_NAMESPACE).stdout):
        if not obj or obj.get("kind") not in ("ClusterRole", "Role"):
            continue
        namespace = obj["metadata"].get("namespace") if obj["kind"] == "Role" else None
        for rule in obj.get("rules") or []:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for named in [f"{resource}:{n}" for n in rule.get("resourceNames") or []] or [resource]:
                        out.extend((verb, group, named, namespace) for verb in rule["verbs"])
    return out


def authorized(admin: UserTools, permissions: list[Permission]) -> list[bool]:
    """What the API server's authorizer answers now for the chart's ServiceAccount: one SubjectAccessReview
    per permission, all in one kubectl call."""
    reviews = []
    for verb, group, resource, namespace in permissions:
        resource, _, object_name = resource.partition(":")
        name, _, subresource = resource.partition("/")
        attrs = {"verb": verb, "group": group, "resource": name}
        if object_name:
            attrs["name"] = object_name
        if subresource:
            attrs["subresource"] = subresource
        if namespace:
            attrs["namespace"] = namespace
        reviews.append(
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": USERNAME, "groups": GROUPS, "resourceAttributes": attrs},
            }
        )
    if not reviews:
        return []
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": reviews})
    out = admin.kubectl("create", "-f", "-", "-o", "json", input=body).stdout
    # kubectl prints the created objects one after the other (or as one List, depending on its version).
    items, pos, decoder = [], 0, json.JSONDecoder()
    while out[pos:].strip():
        obj, pos = decoder.raw_decode(out, len(out) - len(out[pos:].lstrip()))
        items.extend(obj["items"] if obj.get("kind") == "List" else [obj])
    assert len(items) == len(reviews), out
    return [bool(item["status"].get("allowed")) for item in items]


def wait_authorized(
    admin: UserTools, permissions: list[Permission], expected: bool, what: str, timeout: float = 30
) -> None:
    """RBAC objects reach the API server's authorizer (an informer cache) a moment after they are stored or
    deleted: wait until every permission is answered `expected`."""

    def settled() -> bool:
        answers = authorized(admin, permissions)
        pending = [p for p, ok in zip(permissions, answers, strict=True) if ok != expected]
        assert not pending, f"still {'denied' if expected else 'allowed'}: {pending[:5]}"
        return True

    wait_for(settled, timeout=timeout, what=what)


@pytest.fixture
def install(admin: UserTools) -> Iterator:
    ensure_namespace(admin, RBAC_NAMESPACE)
    # Every test of this file installs under the same names (fullnameOverride), so the previous release's
    # ClusterRole, Roles and bindings must be gone from the authorizer before the next one is judged: else a
    # "the rights took effect" check could be answered by objects of the previous release.
    installed: list[Permission] = []

    def run(*values: str) -> None:
        admin.helm(
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            "--skip-crds",  # the session's CRD is there already (see test_helm_lifecycle.py)
            "-n",
            RBAC_NAMESPACE,
            "--wait",
            "--timeout=120s",
            "--set",
            f"fullnameOverride={SA}",
            *values,
        )
        permissions = release_permissions(admin)
        assert permissions, "the release holds no ClusterRole or Role"
        installed.extend(permissions)
        # Every rule of the ClusterRole and of each namespace's Role: separate objects, each reaching the
        # authorizer on its own (one probe of the ClusterRole says nothing of a watched namespace's Role).
        wait_authorized(admin, permissions, True, "the chart's RBAC to take effect")

    yield run
    if installed:
        admin.helm("uninstall", RELEASE, "-n", RBAC_NAMESPACE, "--wait", "--timeout=120s")
        wait_authorized(admin, installed, False, "the uninstalled release's RBAC to be revoked")


def wait_no_terminating_namespaces(admin: UserTools) -> None:
    """Other test files delete their namespaces without waiting: a ServedModel still in one that terminates
    would meet this test's cluster-wide operator, whose writes there the NamespaceLifecycle admission
    refuses (403 "being terminated"), which is no missing right. Start once they are gone."""

    def settled() -> bool:
        items = admin.get_json("namespaces")["items"]
        terminating = [
            n["metadata"]["name"] for n in items if (n.get("status") or {}).get("phase") == "Terminating"
        ]
        assert not terminating, f"still terminating: {terminating}"
        return True

    wait_for(settled, timeout=180, interval=2, what="namespaces of earlier tests to be gone")


@pytest.fixture
def app_namespace(admin: UserTools) -> Iterator[str]:
    wait_no_terminating_namespaces(admin)
    name = f"rbac-{uuid.uuid4().hex[:8]}"
    ensure_namespace(admin, name, restricted=False)
    yield name
    # Complete cleanup before the next test. A ServedModel left in a namespace that is still terminating
    # (namespace deletion takes many seconds while the controller-manager's discovery is stale, e.g. after
    # test_dist.py deleted and restored the CRD, or a peering release removed kopf's CRDs) is picked up by
    # the next test's cluster-wide operator, whose writes there the NamespaceLifecycle admission refuses:
    # 403 "unable to create new content in namespace ... because it is being terminated".
    # (start_operator is torn down before this fixture: no operator of this test recreates anything.)
    admin.kubectl("delete", "servedmodels", "--all", "-n", name, "--timeout=60s")
    admin.kubectl("delete", "namespace", name, "--timeout=180s")
    wait_for(lambda: not admin.exists("namespace", name), timeout=30, what=f"namespace {name} to be gone")
    # pvc() makes a cluster-scoped PersistentVolume as well.
    admin.kubectl("delete", "persistentvolume", f"{name}-models", "--ignore-not-found", "--wait=false")


def sa_kubeconfig(admin: UserTools, cluster: LocalCluster, tmp_path: Path) -> Path:
    return service_account_kubeconfig(admin, cluster, RBAC_NAMESPACE, SA, tmp_path / "sa.kubeconfig")


def apply_as_user(admin: UserTools, manifest: Path, manager: str = "ml-team") -> None:
    admin.kubectl("apply", "--server-side", f"--field-manager={manager}", "-f", str(manifest))


def wait_ready(admin: UserTools, namespace: str, name: str, timeout: float = 90) -> dict:
    def ready() -> dict | None:
        sm = admin.get_json("servedmodel", name, "-n", namespace)
        return sm if condition(sm, "Ready").get("status") == "True" else None

    return wait_for(ready, timeout=timeout, what=f"ServedModel {namespace}/{name} to be Ready")


def used(events: list[dict]) -> set[tuple[str, str, str]]:
    """(verb, group, resource[/subresource]) of every request that got an answer below 400."""
    out = set()
    for e in events:
        ref = e.get("objectRef") or {}
        if "resource" in ref and e["responseStatus"]["code"] < 400:
            res = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            out.add((e["verb"], ref.get("apiGroup", ""), res))
    return out


def used_in(
    cluster: LocalCluster, events: list[dict], since: float, namespace: str
) -> set[tuple[str, str, str]]:
    """What ours used, and what the session's other operator (tests/conftest.py's, bound to the same chart
    rules) did in this namespace: when it wins a race (it deletes a pruned HPA first, say), the rule was
    still needed, by the same rules."""
    others = [
        e
        for e in cluster.audited_writes(OPERATOR_USER, since)
        if (e.get("objectRef") or {}).get("namespace") == namespace
    ]
    return used(events) | used(others)


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {
        (v, g, r)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def assert_no_forbidden(cluster: LocalCluster, since: float, log: str) -> list[dict]:
    events = audit_events(cluster, USERNAME, since)
    assert events, "the audit log holds no request of the chart's ServiceAccount"
    # With the API server's reason: RBAC ("cannot <verb> resource") or admission (a terminating namespace).
    denied = [
        f"{describe(e)} ({e['responseStatus'].get('message', '')[:160]})"
        for e in events
        if e["responseStatus"]["code"] == 403
    ]
    assert denied == [], f"the chart's ServiceAccount was denied: {denied}"
    assert "forbidden" not in log.lower(), log[-3000:]
    return events


# Rules this run cannot show as used: export Jobs and the pods they leave (spec.export runs the exporter,
# whose image no kubelet runs here), and ServiceMonitors (watched only once the Prometheus Operator's CRD
# exists), and `patch` on events, which counts an event repeated on the same object (the event recorder's
# deduplication: tests/unit/operator/test_events.py).
# And `create` on children is authorized inside the server-side-apply PATCH that creates them (the audit log
# shows a patch answered 201): test_server_side_apply_that_creates_needs_create_as_well_as_patch and
# test_a_missing_rule_is_caught prove that one.
NOT_EXERCISED = (
    {(v, "batch", "jobs") for v in ("list", "watch", "create", "patch")}
    | {("list", "", "pods"), ("delete", "batch", "jobs"), ("patch", "", "events")}
    | {
        (v, "monitoring.coreos.com", "servicemonitors")
        for v in ("list", "watch", "create", "patch", "delete")
    }
)
# Writes on the optional children, and deletes of a finished canary's objects, which only the cluster-wide
# test's autoscaled canary makes.
OPTIONAL_WRITES = {
    (v, g, r)
    for v in ("patch", "delete")
    for g, r in (("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets"))
} | {("delete", "", "configmaps"), ("delete", "", "services"), ("delete", "apps", "deployments")}
# Checked by the OwnerReferencesPermissionEnforcement admission when a child's owner reference sets
# blockOwnerDeletion (never a request of its own): a missing rule shows as 403s on the children's applies.
CHECKED_BY_ADMISSION = {("update", "servedmodel.io", "servedmodels/finalizers")}
CREATED_BY_APPLY = {
    ("create", "", "configmaps"),
    ("create", "", "services"),
    ("create", "apps", "deployments"),
    ("create", "autoscaling", "horizontalpodautoscalers"),
    ("create", "policy", "poddisruptionbudgets"),
}


def assert_every_rule_used(
    cluster: LocalCluster,
    rules: list[dict],
    events: list[dict],
    since: float,
    namespace: str,
    optional_writes_made: bool,
) -> None:
    """Least privilege, the other way round: every granted rule was needed by this run, but for those no run
    here can show (NOT_EXERCISED, ...) and, unless the run made them, the optional children's writes."""
    unused = (
        granted(rules)
        - used_in(cluster, events, since, namespace)
        - NOT_EXERCISED
        - CREATED_BY_APPLY
        - CHECKED_BY_ADMISSION
        - (set() if optional_writes_made else OPTIONAL_WRITES)
    )
    assert unused == set(), f"granted but never used: {sorted(unused)}"


def test_cluster_wide_install_is_enough_and_every_rule_is_used(
    admin, cluster, install, app_namespace, start_operator, tmp_path
):
    install()  # default values: cluster-wide
    admin.kubectl("apply", "-f", "-", input=pvc("models", app_namespace))
    manifest = tmp_path / "servedmodel.yaml"
    # Autoscaling from 2 replicas: a HorizontalPodAutoscaler and a PodDisruptionBudget besides the rest; and a
    # canary, with a Deployment, a ConfigMap and Services of its own.
    autoscaled = servedmodel(
        "iris", app_namespace, autoscaling={"minReplicas": 2, "maxReplicas": 3}, canary={"version": 2}
    )
    manifest.write_text(yaml.safe_dump(autoscaled))
    since = time.time()
    op = start_operator(sa_kubeconfig(admin, cluster, tmp_path), [])
    apply_as_user(admin, manifest)
    wait_ready(admin, app_namespace, "iris")

    def children(*kinds: str) -> set[str]:
        selector = "app.kubernetes.io/managed-by=servedmodel-operator"
        return {kind for kind in kinds if admin.get_json(kind, "-n", app_namespace, "-l", selector)["items"]}

    all_kinds = ("deployment", "service", "configmap", "hpa", "pdb")
    wait_for(lambda: children(*all_kinds) == set(all_kinds), timeout=60, what="all five children")
    assert admin.exists("deployment", "iris-canary", "-n", app_namespace)
    # The user drops autoscaling and rolls the canary back: the operator deletes what it no longer needs.
    manifest.write_text(yaml.safe_dump(servedmodel("iris", app_namespace)))
    apply_as_user(admin, manifest)
    wait_for(lambda: not children("hpa", "pdb"), timeout=60, what="the HPA and PDB to be pruned")
    canary = (("deployment", "iris-canary"), ("configmap", "iris-canary-config"), ("service", "iris-canary"))
    wait_for(
        lambda: not any(admin.exists(kind, name, "-n", app_namespace) for kind, name in canary),
        timeout=60,
        what="the canary's objects to be pruned",
    )
    sm = wait_ready(admin, app_namespace, "iris")
    assert sm["status"]["observedGeneration"] == sm["metadata"]["generation"]

    def our_events() -> list[dict]:
        return [
            e
            for e in audit_events(cluster, USERNAME, since)
            if e["verb"] == "create"
            and e["objectRef"].get("resource") == "events"
            and e["responseStatus"]["code"] == 201
        ]

    wait_for(our_events, timeout=30, what="events posted by the chart's ServiceAccount")
    assert any(
        e["source"].get("component") == "servedmodel-operator"
        for e in admin.get_json("events", "-n", app_namespace)["items"]
    )

    events = assert_no_forbidden(cluster, since, op.text())
    rules = admin.get_json("clusterrole", SA)["rules"]
    assert_every_rule_used(cluster, rules, events, since, app_namespace, optional_writes_made=True)
    # SSA that creates an object answers 201 to a PATCH: that is why `create` is granted beside `patch`.
    assert any(
        e["verb"] == "patch"
        and e["objectRef"].get("resource") == "deployments"
        and e["responseStatus"]["code"] == 201
        for e in events
    )

    # GitOps: the operator's writes (status, defaults, its children) leave the user's manifest without drift.
    for args in (
        ["diff", "-f", str(manifest)],
        ["diff", "--server-side", "--field-manager=ml-team", "-f", str(manifest)],
    ):
        proc = admin.kubectl(*args, check=False)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} shows drift:\n{proc.stdout}{proc.stderr}"
    version = admin.get_json("servedmodel", "iris", "-n", app_namespace)["metadata"]["resourceVersion"]
    apply_as_user(admin, manifest)  # a GitOps controller re-applying: no conflict, no change
    assert (
        admin.get_json("servedmodel", "iris", "-n", app_namespace)["metadata"]["resourceVersion"] == version
    )


def _leader_args() -> list[str]:
    return ["--leader-elect", f"--leader-election-namespace={RBAC_NAMESPACE}", f"--leader-election-id={SA}"]


def test_cluster_wide_install_with_leader_election_is_enough(
    admin, cluster, install, app_namespace, start_operator, tmp_path
):
    install()
    admin.kubectl("apply", "-f", "-", input=pvc("models", app_namespace))
    since = time.time()
    op = start_operator(sa_kubeconfig(admin, cluster, tmp_path), _leader_args())
    admin.kubectl("apply", "-f", "-", input=yaml.safe_dump(servedmodel("elected", app_namespace)))
    wait_ready(admin, app_namespace, "elected")
    lease = admin.get_json("lease", SA, "-n", RBAC_NAMESPACE)
    assert lease["spec"]["holderIdentity"], lease
    events = eventually(
        lambda: (
            (e := assert_no_forbidden(cluster, since, op.text()))
            and ("update", "coordination.k8s.io", "leases") in used(e)
            and e
        ),
        what="a renewal of the Lease",
    )
    assert ("create", "coordination.k8s.io", "leases") in used(events)
    rules = (
        admin.get_json("clusterrole", SA)["rules"]
        + admin.get_json("role", f"{SA}-leader-election", "-n", RBAC_NAMESPACE)["rules"]
    )
    assert_every_rule_used(cluster, rules, events, since, app_namespace, optional_writes_made=False)


@pytest.mark.parametrize("leader", [False, True], ids=["standalone", "leader-elect"])
def test_namespaced_install_is_enough(
    admin, cluster, install, app_namespace, start_operator, tmp_path, leader
):
    install(
        "--set",
        f"watchNamespaces={{{app_namespace}}}",
        "--set",
        f"leaderElection.enabled={str(leader).lower()}",
    )
    assert admin.exists("role", SA, "-n", app_namespace)
    cluster_rules = granted(admin.get_json("clusterrole", SA)["rules"])
    assert {r for _, _, r in cluster_rules} == {"customresourcedefinitions", "namespaces"}
    admin.kubectl("apply", "-f", "-", input=pvc("models", app_namespace))
    manifest = tmp_path / "servedmodel.yaml"
    manifest.write_text(yaml.safe_dump(servedmodel("mnist", app_namespace)))
    since = time.time()
    args = [f"--namespace={app_namespace}"] + (_leader_args() if leader else [])
    op = start_operator(sa_kubeconfig(admin, cluster, tmp_path), args)
    apply_as_user(admin, manifest)
    wait_ready(admin, app_namespace, "mnist")
    events = assert_no_forbidden(cluster, since, op.text())
    if leader:  # the replica holds the chart's Lease
        assert admin.get_json("lease", SA, "-n", RBAC_NAMESPACE)["spec"]["holderIdentity"]
    namespaced = {
        (e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("namespace"))
        for e in events
        if e.get("objectRef")
    }
    assert ("list", "servedmodels", app_namespace) in namespaced  # watched in the namespace, not cluster-wide
    assert ("watch", "namespaces", None) in namespaced  # kopf follows the namespaces it was given
    rules = (
        admin.get_json("role", SA, "-n", app_namespace)["rules"] + admin.get_json("clusterrole", SA)["rules"]
    )
    assert_every_rule_used(cluster, rules, events, since, app_namespace, optional_writes_made=False)


def test_server_side_apply_that_creates_needs_create_as_well_as_patch(
    admin, cluster, install, app_namespace, tmp_path
):
    """The API server checks `create` when an apply PATCH creates the object; `patch` alone only updates."""
    install("--set", "watchNamespaces={servedmodel-e2e-rbac}")  # no rights in app_namespace
    admin.kubectl(
        "create", "role", "cm-patch-only", "-n", app_namespace, "--verb=patch", "--resource=configmaps"
    )
    admin.kubectl(
        "create",
        "rolebinding",
        "cm-patch-only",
        "-n",
        app_namespace,
        "--role=cm-patch-only",
        f"--serviceaccount={RBAC_NAMESPACE}:{SA}",
    )
    kc = sa_kubeconfig(admin, cluster, tmp_path)
    cm = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "probe", "namespace": app_namespace},
            "data": {"a": "1"},
        }
    )

    def sa_apply() -> object:
        return admin.kubectl(
            "apply",
            "--server-side",
            "--field-manager=servedmodel-operator",
            "-f",
            "-",
            input=cm,
            kubeconfig=kc,
            check=False,
        )

    denied = wait_for(
        lambda: (p := sa_apply()).returncode != 0 and "forbidden" in p.stderr.lower() and p,
        timeout=10,
        what="the create-less apply to be refused",
    )
    assert 'cannot create resource "configmaps"' in denied.stderr, denied.stderr
    admin.kubectl("create", "configmap", "probe", "-n", app_namespace)
    updated = sa_apply()
    assert updated.returncode == 0, updated.stderr  # the object exists: `patch` is enough


def test_a_missing_rule_is_caught(admin, cluster, install, app_namespace, start_operator, tmp_path):
    """The same check fails when the role lacks a rule the operator needs: here `create` on deployments and
    on events, removed from the installed ClusterRole."""
    install()
    role = admin.get_json("clusterrole", SA)
    for rule in role["rules"]:
        if rule["resources"] in (["deployments"], ["events"]):
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    role["rules"] = [rule for rule in role["rules"] if rule["verbs"]]
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        role["metadata"].pop(key, None)
    admin.kubectl("replace", "-f", "-", input=json.dumps(role))
    removed = [("create", "apps", "deployments", None), ("create", "", "events", None)]
    wait_authorized(admin, removed, False, "the removed rules to be revoked")
    admin.kubectl("apply", "-f", "-", input=pvc("models", app_namespace))
    since = time.time()
    op = start_operator(sa_kubeconfig(admin, cluster, tmp_path), [])
    admin.kubectl("apply", "-f", "-", input=yaml.safe_dump(servedmodel("broken", app_namespace)))

    def denied() -> set[str]:
        found = {
            describe(e) for e in audit_events(cluster, USERNAME, since) if e["responseStatus"]["code"] == 403
        }
        need = {
            f"patch apps/deployments ns={app_namespace} -> 403",
            f"create core/events ns={app_namespace} -> 403",
        }
        return found if need <= found else set()

    wait_for(denied, timeout=60, what="403s for the missing rules in the audit log")
    wait_for(lambda: "forbidden" in op.text().lower(), timeout=30, what="the operator to log the refusal")
    others = [
        e
        for e in cluster.audited_writes(OPERATOR_USER, since)
        if (e.get("objectRef") or {}).get("namespace") == app_namespace
    ]
    if not others:  # no second operator raced ours: the ServedModel must say why it is not served
        ready = wait_for(
            lambda: (
                condition(admin.get_json("servedmodel", "broken", "-n", app_namespace), "Ready").get("reason")
                == "ApplyFailed"
                and condition(admin.get_json("servedmodel", "broken", "-n", app_namespace), "Ready")
            ),
            timeout=30,
            what="Ready=False with reason ApplyFailed",
        )
        assert ready["status"] == "False" and "forbidden" in ready["message"].lower(), ready
