"""The operator image runs as users run it: its non-root user, a read-only root file system, no
capabilities; logged in to a real API server with a kubeconfig mounted in, it answers its health endpoint
and reconciles a ServedModel (the API server's audit log shows the writes of the container's own identity).

The container shares the host's network namespace only to reach the test control plane, which listens on
loopback; everything it is asked to serve binds 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubehelpers import Kube, pvc, servedmodel
from localcluster import LocalCluster, free_port, kubeconfig_text
from ocirun import Mount, OciContainer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONF = "/etc/servedmodel"


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A namespace outside the session operator's (t-*): the container's operator is the only one acting
    there, so its writes are its own and not a race with another operator."""
    name = f"img-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _identity(kube: Kube, namespace: str) -> tuple[str, str]:
    """A ServiceAccount of its own for the containerised operator (so its writes are told apart in the
    audit log from any other operator's), with the operator's rights; returns (username, token)."""
    kube.kubectl("create", "serviceaccount", "operator-in-image", "-n", namespace)
    kube.kubectl(
        "create",
        "clusterrolebinding",
        f"{namespace}-operator-in-image",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:operator-in-image",
    )
    token = kube.kubectl("create", "token", "operator-in-image", "-n", namespace, "--duration=1h").stdout
    return f"system:serviceaccount:{namespace}:operator-in-image", token.strip()


def _kube_config_dir(cluster: LocalCluster, user: str, token: str, into: Path) -> Path:
    """The operator's kubeconfig and the cluster CA, readable by the container's user."""
    into.mkdir(mode=0o755)
    shutil.copy(cluster.ca_file, into / "ca.crt")
    (into / "kubeconfig").write_text(kubeconfig_text(cluster.server, Path(CONF) / "ca.crt", user, token))
    for path in into.iterdir():
        path.chmod(0o644)
    return into


def _status_ids(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.split() for k, v in (ln.split(":", 1) for ln in lines) if k in ("Uid", "Gid", "CapEff")}


def test_operator_image_runs_non_root_read_only_answers_health_and_reconciles(
    built_image, cluster: LocalCluster, kube: Kube, crd: None, namespace: str, tmp_path: Path
) -> None:
    image = built_image("operator")
    user, token = _identity(kube, namespace)
    port, metrics_port = free_port(), free_port()
    container = OciContainer(
        image,
        tmp_path / "container",
        args=[
            "--log-format=json",
            f"--liveness=http://127.0.0.1:{port}/healthz",
            f"--metrics-port={metrics_port}",
            f"--namespace={namespace}",
        ],
        env={"KUBECONFIG": f"{CONF}/kubeconfig"},
        mounts=[Mount(CONF, _kube_config_dir(cluster, user, token, tmp_path / "conf"))],
        host_network=True,
    )
    assert container.user == (65532, 65532)  # from the image's USER, not set by the test
    assert container.config["root"]["readonly"] is True
    with container:
        container.start()
        deadline = time.monotonic() + 120
        status = None
        while status != 200:
            assert container.running(), f"the operator container exited:\n{container.output()}"
            assert time.monotonic() < deadline, f"no healthy answer in 120 s:\n{container.output()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    status = resp.status
            except OSError:
                time.sleep(0.3)  # not listening yet: poll again
        ids = _status_ids(container.pid())
        assert ids["Uid"] == ["65532"] * 4 and ids["Gid"] == ["65532"] * 4
        assert int(ids["CapEff"][0], 16) == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            assert b"# TYPE" in resp.read()
        write = container.exec(["python", "-c", "open('/usr/local/lib/probe', 'w')"])
        assert write.returncode != 0 and "Read-only file system" in write.stderr
        write_tmp = container.exec(["python", "-c", "open('/tmp/probe', 'w').write('ok')"])
        assert write_tmp.returncode == 0, write_tmp.stderr

        started = time.time()
        kube.apply(pvc("models", namespace))
        kube.apply(servedmodel("imaged", namespace))
        deadline = time.monotonic() + 120
        while True:
            created = {
                (w["objectRef"].get("resource"), w["objectRef"].get("name"))
                for w in cluster.audited_writes(user, started)
                if w.get("verb") in ("create", "patch", "update") and w.get("objectRef")
            }
            if ("deployments", "imaged") in created:
                break
            assert container.running(), f"the operator container exited:\n{container.output()}"
            assert time.monotonic() < deadline, (
                f"the container's operator wrote no Deployment in 120 s (writes: {sorted(created)}):\n"
                f"{container.output()}"
            )
            time.sleep(0.5)  # the audit log is a file: poll it
        deployment = kube.kubectl("get", "deployment", "imaged", "-n", namespace, "-o", "json").stdout
        assert json.loads(deployment)["metadata"]["ownerReferences"][0]["name"] == "imaged"
    logs = [ln for ln in (container.stdout() + container.stderr()).splitlines() if ln.strip()]
    assert logs, "the operator logged nothing"
    records = [json.loads(ln) for ln in logs]  # --log-format=json: one JSON object per line
    assert any("message" in r for r in records)
    kube.kubectl("delete", "clusterrolebinding", f"{namespace}-operator-in-image", check=False)
