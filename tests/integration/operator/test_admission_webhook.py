"""Drift correction against a mutating admission webhook that rewrites a field the operator sets (here, an
image registry rewrite, as cluster policies do): the operator must settle with a bounded number of writes,
not re-apply on every resync and fight the webhook forever.

The webhook is real: a MutatingWebhookConfiguration that the API server calls over HTTPS, served by a small
server in this test on loopback, with a certificate from a CA made here (its caBundle).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubehelpers import eventually, pvc, servedmodel
from localcluster import OPERATOR_USER
from testpki import CA

pytestmark = pytest.mark.integration

MIRROR = "mirror.internal/"  # the registry the webhook points every image at


def _certificates(folder: Path) -> tuple[bytes, Path, Path]:
    """A CA, and a serving certificate for 127.0.0.1 it signed: (CA PEM, cert file, key file)."""
    ca = CA.create("webhook-test-ca")
    cert_file, key_file = folder / "webhook.crt", folder / "webhook.key"
    ca.issue_server("127.0.0.1", cert_file, key_file, ips=["127.0.0.1"])
    return ca.pem, cert_file, key_file


class RegistryRewrite(BaseHTTPRequestHandler):
    """AdmissionReview in, a JSONPatch out that puts every container image of a Deployment behind MIRROR."""

    calls: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        containers = request["object"]["spec"]["template"]["spec"].get("containers") or []
        patch = [
            {
                "op": "replace",
                "path": f"/spec/template/spec/containers/{i}/image",
                "value": MIRROR + c["image"],
            }
            for i, c in enumerate(containers)
            if not c.get("image", "").startswith(MIRROR)
        ]
        RegistryRewrite.calls.append(request["operation"])
        response = {"uid": request["uid"], "allowed": True}
        if patch:
            response |= {
                "patchType": "JSONPatch",
                "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
            }
        body = json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def registry_rewrite(kube, namespace, tmp_path) -> Iterator[None]:
    ca, cert_file, key_file = _certificates(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), RegistryRewrite)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = f"registry-rewrite-{namespace}"
    kube.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "registry-rewrite.servedmodel-test.io",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{server.server_address[1]}/mutate",
                        "caBundle": base64.b64encode(ca).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "resources": ["deployments"],
                            "operations": ["CREATE", "UPDATE"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                }
            ],
        }
    )
    try:
        yield
    finally:
        kube.kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found")
        server.shutdown()


def _deployment_writes(cluster, namespace: str, since: float) -> list[str]:
    return [
        f"{w['verb']} {w['objectRef'].get('name')} at {w['requestReceivedTimestamp']}"
        for w in cluster.audited_writes(OPERATOR_USER, since)
        if (w.get("objectRef") or {}).get("namespace") == namespace
        and w["objectRef"].get("resource") == "deployments"
        and not w["objectRef"].get("subresource")
        and "dryRun" not in w.get("requestURI", "")  # judged, not stored
    ]


def test_drift_correction_settles_against_a_mutating_webhook(
    kube, operator, cluster, namespace, registry_rewrite
):
    started = time.time()
    kube.apply(pvc("models", namespace))
    kube.apply(servedmodel("rewritten", namespace))
    kube.wait_condition("servedmodel", "rewritten", namespace, "Ready", status="True", timeout=90)
    image = kube.get("deployment", "rewritten", namespace)["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image.startswith(MIRROR), image  # the webhook ran on the operator's apply
    assert RegistryRewrite.calls, "the API server never called the webhook"

    # A quiet window (the one kind of sleep a negative check needs): three resyncs of the operator (4 s).
    quiet_from = time.time()
    time.sleep(14)
    assert _deployment_writes(cluster, namespace, quiet_from) == []
    # Bounded from the start: the create, at most one more apply to learn what admission makes of it.
    writes = _deployment_writes(cluster, namespace, started)
    assert 1 <= len(writes) <= 2, writes
    drift_events = [e for e in kube.events(namespace, "rewritten") if e["reason"] == "DriftCorrected"]
    assert len(drift_events) <= 1, drift_events

    # Real drift is still corrected: a hand edit of a field the operator sets is reverted once.
    kube.kubectl("-n", namespace, "scale", "deployment", "rewritten", "--replicas=3")
    eventually(
        lambda: kube.get("deployment", "rewritten", namespace)["spec"]["replicas"] == 1,
        what="the hand edit reverted",
    )
