"""The operator image runs as users run it: its non-root user, a read-only root file system, no
capabilities; logged in to a real API server with a kubeconfig mounted in, it answers its health endpoint.

The container shares the host's network namespace only to reach the test control plane, which listens on
loopback; everything it is asked to serve binds 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from localcluster import OPERATOR_USER, LocalCluster, free_port, kubeconfig_text
from ocirun import Mount, OciContainer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONF = "/etc/servedmodel"


def _kube_config_dir(cluster: LocalCluster, into: Path) -> Path:
    """The operator's kubeconfig and the cluster CA, readable by the container's user."""
    into.mkdir(mode=0o755)
    shutil.copy(cluster.ca_file, into / "ca.crt")
    (into / "kubeconfig").write_text(
        kubeconfig_text(cluster.server, Path(CONF) / "ca.crt", OPERATOR_USER, cluster.operator_token)
    )
    for path in into.iterdir():
        path.chmod(0o644)
    return into


def _status_ids(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.split() for k, v in (ln.split(":", 1) for ln in lines) if k in ("Uid", "Gid", "CapEff")}


def test_operator_image_starts_non_root_read_only_and_answers_its_health_endpoint(
    built_image, cluster: LocalCluster, crd: None, operator_rbac: None, namespace: str, tmp_path: Path
) -> None:
    image = built_image("operator")
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
        mounts=[Mount(CONF, _kube_config_dir(cluster, tmp_path / "conf"))],
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
    logs = [ln for ln in (container.stdout() + container.stderr()).splitlines() if ln.strip()]
    assert logs, "the operator logged nothing"
    records = [json.loads(ln) for ln in logs]  # --log-format=json: one JSON object per line
    assert any("message" in r for r in records)
