"""Who may run what: the chart's ValidatingAdmissionPolicy on the real API server, and the operator's own
check of the same rules on a control plane where that policy is not installed.

Both are configured the way a user configures them: with chart values, rendered by the real helm. The
policy objects are applied to the session's control plane, bound to one labelled namespace only (so no
other test's ServedModels meet them); the operator check runs on a second control plane of its own, with
the environment the chart gives the operator, so no other operator reconciles its ServedModels.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from argocdhealth import health, patch_script
from chartrights import grant_chart_rights, rbac_denials
from e2ehelpers import ROOT, UserTools, by_kind, docs, wait_for
from kubehelpers import OperatorProcess
from localcluster import OPERATOR_USER, LocalCluster

pytestmark = pytest.mark.integration

VALUES = [
    "--set",
    "policy.allowedImagePrefixes={tensorflow/serving:,ghcr.io/servedmodel/servedmodel-exporter:}",
    "--set",
    "policy.allowedServiceAccounts={default,model-reader}",
    "--set",
    "policy.admissionPolicy.enabled=true",
    "--set",
    "policy.admissionPolicy.namespaceSelector.matchLabels.servedmodel\\.io/policy-test=on",
]
ALLOWED_PREFIXES = "tensorflow/serving:, ghcr.io/servedmodel/servedmodel-exporter:"
IMAGE_RULE = (
    "spec.image 'evil.example/miner:1' is not allowed by the allowedImagePrefixes rule: "
    f"images must start with one of {ALLOWED_PREFIXES}"
)
EXPORT_RULE = (
    "spec.export.image 'evil.example/exporter:1' is not allowed by the allowedImagePrefixes rule: "
    f"images must start with one of {ALLOWED_PREFIXES}"
)
MODEL_IMAGE_RULE = (
    "spec.storage.image.reference 'evil.example/model:1' is not allowed by the allowedImagePrefixes rule: "
    f"images must start with one of {ALLOWED_PREFIXES}"
)
SYNC_IMAGE_RULE = (
    "spec.storage.s3.syncImage 'evil.example/sync:1' is not allowed by the allowedImagePrefixes rule: "
    f"images must start with one of {ALLOWED_PREFIXES}"
)
ACCOUNT_RULE = (
    "spec.serviceAccountName 'cluster-admin-sa' is not allowed by the allowedServiceAccounts rule: "
    "allowed are default, model-reader"
)
# name -> (extra spec, the message that must name the broken rule)
REFUSED = {
    "bad-image": ({"image": "evil.example/miner:1"}, IMAGE_RULE),
    "bad-export": (
        {"export": {"source": {"path": "in/m.keras"}, "image": "evil.example/exporter:1"}},
        EXPORT_RULE,
    ),
    "bad-account": ({"serviceAccountName": "cluster-admin-sa"}, ACCOUNT_RULE),
    "bad-model-image": ({"storage": {"image": {"reference": "evil.example/model:1"}}}, MODEL_IMAGE_RULE),
    "bad-sync-image": (
        {"storage": {"s3": {"bucket": "models", "syncImage": "evil.example/sync:1"}}},
        SYNC_IMAGE_RULE,
    ),
}
ALLOWED = {
    "defaults": {"export": {"source": {"path": "in/m.keras"}}},  # default server and exporter images
    "listed": {"image": "tensorflow/serving:2.17.0", "serviceAccountName": "model-reader"},
}


def servedmodel(name: str, namespace: str, extra: dict) -> dict:
    spec = {"storage": {"persistentVolumeClaim": {"claimName": "models"}, "path": name}, **extra}
    return {
        "apiVersion": "servedmodel.io/v1alpha1",
        "kind": "ServedModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def rendered(user: UserTools) -> list[dict]:
    return docs(user.render(*VALUES))


@pytest.fixture
def policy(admin: UserTools, rendered: list[dict]) -> Iterator[str]:
    """The chart's policy and binding installed; yields a namespace the binding selects."""
    objs = by_kind(rendered, "ValidatingAdmissionPolicy") + by_kind(
        rendered, "ValidatingAdmissionPolicyBinding"
    )
    assert [o["kind"] for o in objs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    manifest = yaml.safe_dump_all(objs)
    ns = f"policy-{uuid.uuid4().hex[:8]}"
    admin.kubectl("create", "namespace", ns)
    admin.kubectl("label", "namespace", ns, "servedmodel.io/policy-test=on")
    admin.kubectl("apply", "-f", "-", input=manifest)
    try:
        yield ns
    finally:
        admin.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifest)
        admin.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_admission_policy_refuses_what_breaks_a_rule_and_allows_the_defaults(
    admin: UserTools, policy: str, rendered: list[dict]
):
    ns = policy
    (vap,) = by_kind(rendered, "ValidatingAdmissionPolicy")

    def type_checked():
        live = admin.get_json("validatingadmissionpolicy", vap["metadata"]["name"])
        status = live.get("status") or {}
        return status.get("observedGeneration") == live["metadata"]["generation"] and status

    status = wait_for(type_checked, timeout=60, what="the policy type-checked against the CRD")
    assert not (status.get("typeChecking") or {}).get("expressionWarnings"), status

    def refused(name: str, extra: dict, dry_run: bool = True) -> str:
        """The API server's refusal, or "" when it admits the object (a server-side dry run by default:
        it passes admission without storing, so a probe never leaves an object behind)."""
        args = ["create", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
        proc = admin.kubectl(*args, input=json.dumps(servedmodel(name, ns, extra)), check=False)
        return proc.stderr if proc.returncode != 0 else ""

    # The binding takes effect within a moment of its creation: wait until the first refusal.
    name, (extra, message) = next(iter(REFUSED.items()))
    wait_for(lambda: refused(name, extra), timeout=30, what="the policy in force")
    for name, (extra, message) in REFUSED.items():
        stderr = refused(name, extra)
        policy_name = vap["metadata"]["name"]
        said = f"ValidatingAdmissionPolicy '{policy_name}' with binding '{policy_name}' denied request: "
        said += message
        assert said in stderr, stderr
    for name, extra in ALLOWED.items():
        assert refused(name, extra, dry_run=False) == "", f"{name} was refused"

    # The binding selects labelled namespaces only; elsewhere the API server admits what the policy refuses.
    other = f"nopolicy-{uuid.uuid4().hex[:8]}"
    admin.kubectl("create", "namespace", other)
    try:
        extra, _ = REFUSED["bad-image"]
        admin.kubectl("apply", "-f", "-", input=json.dumps(servedmodel("bad-image", other, extra)))
    finally:
        admin.kubectl("delete", "namespace", other, "--wait=false", check=False)


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A control plane without the admission policy, and without other tests' operators."""
    cp = LocalCluster(workdir=tmp_path_factory.mktemp("policy-controlplane"), with_kwok=False)
    cp.start()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "servedmodel.io_servedmodels.yaml"))
        # `kubectl wait` fails outright while a new CRD has no conditions yet: poll it.
        wait_for(
            lambda: (
                cp.kubectl(
                    "wait",
                    "--for=condition=Established",
                    "--timeout=5s",
                    "crd/servedmodels.servedmodel.io",
                    check=False,
                ).returncode
                == 0
            ),
            timeout=60,
            what="the CRD established",
        )
        # The operator gets exactly the chart's rules, as everywhere in the tests.
        grant_chart_rights(cp.kubectl, OPERATOR_USER, "servedmodel-operator-policy-test")
        yield cp
    finally:
        cp.stop()


def test_without_the_admission_policy_the_operator_refuses_the_same_specs(
    bare_cluster: LocalCluster, rendered: list[dict], tmp_path: Path
):
    cp = bare_cluster
    (deployment,) = by_kind(rendered, "Deployment")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"].startswith("SERVEDMODEL_ALLOWED_")
    }
    assert env == {
        "SERVEDMODEL_ALLOWED_IMAGE_PREFIXES": "tensorflow/serving:,ghcr.io/servedmodel/servedmodel-exporter:",
        "SERVEDMODEL_ALLOWED_SERVICE_ACCOUNTS": "default,model-reader",
    }
    ns = "models"
    cp.kubectl("create", "namespace", ns)
    cp.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "models", "namespace": ns},
                    "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
                },
                *[servedmodel(name, ns, extra) for name, (extra, _) in REFUSED.items()],
                *[servedmodel(name, ns, extra) for name, extra in ALLOWED.items()],
            ]
        ),
    )
    op = OperatorProcess(
        cp.operator_kubeconfig, tmp_path / "operator.log", ["--namespace", ns, "--verbose"], env
    )
    try:
        op.wait_live()

        def conditions(name: str) -> dict:
            sm = json.loads(cp.kubectl("get", "servedmodel", name, "-n", ns, "-o", "json").stdout)
            return {c["type"]: c for c in (sm.get("status") or {}).get("conditions") or []}

        for name, (_, message) in REFUSED.items():
            ready = wait_for(
                lambda name=name: (
                    conditions(name).get("Ready", {}).get("reason") == "PolicyViolation"
                    and conditions(name)["Ready"]
                ),
                timeout=60,
                what=f"{name}: PolicyViolation",
            )
            assert ready["status"] == "False"
            assert ready["message"] == message + "."
            assert conditions(name)["Degraded"]["status"] == "True"
            sm = json.loads(cp.kubectl("get", "servedmodel", name, "-n", ns, "-o", "json").stdout)
            assert health(patch_script(), sm) == (
                "Degraded",
                f"PolicyViolation: {message}.",
            )  # Argo CD's view
        # The allowed ones are rendered (their Deployments exist), the refused ones left no child behind.
        for name in ALLOWED:
            wait_for(
                lambda name=name: (
                    cp.kubectl("get", "deployment", name, "-n", ns, check=False).returncode == 0
                ),
                timeout=60,
                what=f"{name}: Deployment",
            )
        children = json.loads(
            cp.kubectl("get", "deployments,services,configmaps,jobs", "-n", ns, "-o", "json").stdout
        )["items"]
        owners = {ref["name"] for obj in children for ref in obj["metadata"].get("ownerReferences") or []}
        assert owners == set(ALLOWED), owners
        events = json.loads(cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        warned = {
            e["involvedObject"]["name"]
            for e in events
            if e["reason"] == "PolicyViolation" and e["type"] == "Warning"
        }
        assert warned == set(REFUSED), warned
        assert rbac_denials(cp.audited_writes(OPERATOR_USER)) == []  # the chart's rules were enough
    finally:
        op.stop()


@pytest.mark.parametrize(
    "args, message",
    [
        # A comma would split the operator's SERVEDMODEL_ALLOWED_IMAGE_PREFIXES into two prefixes.
        (["--set", "policy.allowedImagePrefixes[0]=registry.example.com/a\\,b/"], "does not match pattern"),
        (["--set", "policy.allowedServiceAccounts={Not_A_Name}"], "does not match pattern"),
        (["--set", "policy.admissionPolicy.enable=true"], "additional properties 'enable' not allowed"),
    ],
)
def test_bad_policy_values_are_refused_with_a_clear_message(user: UserTools, args: list[str], message: str):
    proc = user.helm("template", "x", str(ROOT / "charts" / "servedmodel-operator"), *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
