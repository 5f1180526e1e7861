"""The real node of the local test cluster (tools/controlplane/realnode.py): what only a kubelet, a
container runtime, kube-proxy and cluster DNS do, checked on real pods; and that the node's network stays
inside the machine and its teardown leaves nothing behind.

These tests fail (never skip) when the node cannot be built or started.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubehelpers import Kube, condition, eventually
from localcluster import LocalCluster
from nodenet import KWOK_POD_CIDR, SERVICE_CIDR, Slot
from realnode import NODE_LABEL, NODE_TAINT, RealNode

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def pod(name: str, namespace: str, node: RealNode, command: str, **spec: Any) -> dict[str, Any]:
    """A busybox pod on the real node running `command` with sh."""
    container = {
        "name": "main",
        "image": node.test_image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", command],
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            **node.pod_placement(),
            "terminationGracePeriodSeconds": 1,  # busybox as PID 1 ignores SIGTERM
            "containers": [container],
            **spec,
        },
    }


def wait_ready(kube: Kube, name: str, namespace: str, timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = kube.get("pod", name, namespace)
        return obj if condition(obj, "Ready").get("status") == "True" else None

    return eventually(ready, timeout=timeout, what=f"pod {namespace}/{name} Ready")


def host_firewall() -> str:
    return "".join(
        re.sub(
            r"^#.*\n",
            "",
            subprocess.run([tool], capture_output=True, text=True, check=True).stdout,
            flags=re.M,
        )
        for tool in ("iptables-save", "ip6tables-save")
    )


def route_get(address: str, netns: Path | None = None) -> subprocess.CompletedProcess:
    cmd = ["ip", "route", "get", address]
    if netns is not None:
        cmd = ["nsenter", f"--net={netns}", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True)


def assert_unreachable_from_host(address: str) -> None:
    """The kernel refuses to route `address` from the host's namespace (an `unreachable` route): nothing
    sent there can leave the machine. Checked with `ip route get`, never with a request."""
    proc = route_get(address)
    assert proc.returncode != 0 and "No route to host" in proc.stderr, (address, proc.stdout, proc.stderr)


# -- the node itself ------------------------------------------------------------------------------


def test_node_is_ready_labelled_and_tainted(kube: Kube, real_node: RealNode) -> None:
    node = json.loads(kube.kubectl("get", "node", real_node.name, "-o", "json").stdout)
    assert condition(node, "Ready")["status"] == "True"
    assert node["metadata"]["labels"][NODE_LABEL[0]] == NODE_LABEL[1]
    key, value, effect = NODE_TAINT
    assert {"key": key, "value": value, "effect": effect} in node["spec"]["taints"]
    assert {"type": "InternalIP", "address": real_node.ip} in node["status"]["addresses"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6.")


def test_readiness_probe_is_executed_by_the_kubelet(kube: Kube, real_node: RealNode, namespace: str) -> None:
    """Ready only once the probed page exists: the kubelet really runs the HTTP probe. kubectl logs and
    exec go through the kubelet too."""
    manifest = pod(
        "web",
        namespace,
        real_node,
        "echo serving from $(hostname); exec httpd -f -p 8080 -h /www",
        container={"readinessProbe": {"httpGet": {"path": "/ready.html", "port": 8080}, "periodSeconds": 1}},
    )
    kube.apply(manifest)

    def probe_failed() -> bool:
        return any(
            e["reason"] == "Unhealthy"
            and "Readiness probe failed: HTTP probe failed with statuscode: 404" in e["message"]
            for e in kube.events(namespace, "web")
        )

    eventually(probe_failed, timeout=60, what="the kubelet's failed readiness probe event")
    assert condition(kube.get("pod", "web", namespace), "Ready")["status"] == "False"
    kube.kubectl("exec", "-n", namespace, "web", "--", "sh", "-c", "echo ok > /www/ready.html")
    obj = wait_ready(kube, "web", namespace, timeout=30)
    assert obj["spec"]["nodeName"] == real_node.name
    assert obj["status"]["podIP"].startswith(real_node.pod_cidr.rsplit(".", 1)[0] + ".")
    assert "serving from web" in kube.kubectl("logs", "-n", namespace, "web").stdout
    # The pod answers on its own address from the node's namespace.
    page = real_node.run_in_netns(
        ["curl", "-sS", "-m", "5", f"http://{obj['status']['podIP']}:8080/ready.html"]
    )
    assert page.stdout == "ok\n", page.stderr


def test_configmap_update_reaches_the_pod(kube: Kube, real_node: RealNode, namespace: str) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "conf", "namespace": namespace},
            "data": {"greeting": "first"},
        }
    )
    kube.apply(
        pod(
            "reader",
            namespace,
            real_node,
            "exec sleep 3600",
            container={"volumeMounts": [{"name": "conf", "mountPath": "/conf"}]},
            volumes=[{"name": "conf", "configMap": {"name": "conf"}}],
        )
    )
    wait_ready(kube, "reader", namespace)

    def mounted() -> str:
        return kube.kubectl("exec", "-n", namespace, "reader", "--", "cat", "/conf/greeting").stdout

    assert mounted() == "first"
    start = time.monotonic()
    kube.kubectl("patch", "configmap", "conf", "-n", namespace, "-p", '{"data":{"greeting":"second"}}')
    eventually(
        lambda: mounted() == "second", timeout=120, interval=0.5, what="the updated ConfigMap in the pod"
    )
    print(f"\n[figure] ConfigMap update visible in the pod after {time.monotonic() - start:.1f}s")


def start_token_server(kube: Kube, real_node: RealNode, namespace: str) -> str:
    """Pod `server` (label app=server) answering HTTP on 8080 with a fresh token; returns the token."""
    token = uuid.uuid4().hex
    kube.apply(
        pod(
            "server",
            namespace,
            real_node,
            f"echo {token} > /www/index.html; exec httpd -f -p 8080 -h /www",
            container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
        )
    )
    return token


def token_service(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A Service on port 80 in front of start_token_server's pod."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}], **spec},
    }


def test_service_and_dns_from_a_pod_and_from_the_node(
    kube: Kube, real_node: RealNode, namespace: str
) -> None:
    token = start_token_server(kube, real_node, namespace)
    kube.apply(token_service("web", namespace))
    wait_ready(kube, "server", namespace)
    cluster_ip = kube.get("service", "web", namespace)["spec"]["clusterIP"]
    name = f"web.{namespace}.svc"
    fqdn = f"{name}.cluster.local"

    # From a client pod: the cluster DNS answers the Service's full name with its ClusterIP, and the short
    # name `web.<ns>.svc` (through the search path the kubelet wrote) reaches the server through the
    # ClusterIP (busybox wget crashes here: nc speaks HTTP).
    client = f"cat /etc/resolv.conf && nslookup {fqdn} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {name} 80"
    kube.apply(pod("client", namespace, real_node, client, restartPolicy="Never"))

    def finished() -> dict[str, Any] | None:
        obj = kube.get("pod", "client", namespace)
        return obj if obj and obj["status"].get("phase") in ("Succeeded", "Failed") else None

    obj = eventually(finished, timeout=90, what="the client pod to finish")
    out = kube.kubectl("logs", "-n", namespace, "client").stdout
    assert obj["status"]["phase"] == "Succeeded", out
    assert f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local" in out
    assert "nameserver 10.96.0.10" in out
    assert f"Name:\t{fqdn}\nAddress: {cluster_ip}" in out
    assert token in out.split(" 200 OK", 1)[1], out

    # From the node's network namespace: DNS at the cluster DNS Service, HTTP to the ClusterIP.
    dns = real_node.run_in_netns(["/bin/busybox", "nslookup", fqdn, "10.96.0.10"])
    assert cluster_ip in dns.stdout, dns.stdout + dns.stderr
    page = real_node.run_in_netns(["curl", "-sS", "-m", "5", f"http://{cluster_ip}/"])
    assert page.stdout.strip() == token, page.stderr
    # The host's namespace routes the Service range nowhere: nothing to the ClusterIP can leave the machine.
    assert_unreachable_from_host(cluster_ip)


# One connection from a fixed source port in the node's namespace; prints what became of it as JSON.
CONNECT_FROM = """
import json, socket, sys, time
source, port, address = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((source, port))
sock.settimeout(10)
start = time.monotonic()
try:
    sock.connect((address, 80))
    sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    result = {"answer": answer.decode(errors="replace")}
except OSError as exc:
    result = {"errno": exc.errno, "error": str(exc)}
result["seconds"] = round(time.monotonic() - start, 2)
print(json.dumps(result))
"""


def connect_from(node: RealNode, source: tuple[str, int], address: str) -> dict[str, Any]:
    proc = node.run_in_netns([sys.executable, "-c", CONNECT_FROM, source[0], str(source[1]), address])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_service_reached_before_kube_proxy_knows_it_leaves_nothing_behind(
    kube: Kube, real_node: RealNode, namespace: str
) -> None:
    """A client in the node's namespace that reaches for a Service address kube-proxy has not rewritten
    (yet) is refused at once, and the next connection from the same source port reaches the Service once
    it exists. Such a connection used to wait 3 s for an ARP answer on the pod bridge and leave a conntrack
    entry without DNAT for 120 s: a traffic loop that reused its source port then lost one request with
    'No route to host' (nodenet._reject_unrewritten_service_traffic)."""
    token = start_token_server(kube, real_node, namespace)
    taken = {
        svc["spec"].get("clusterIP")
        for svc in json.loads(kube.kubectl("get", "services", "-A", "-o", "json").stdout)["items"]
    }
    rng = random.Random()
    address = next(a for a in (f"10.96.15.{rng.randint(2, 250)}" for _ in range(100)) if a not in taken)
    source = (real_node.slot.pod_gateway, rng.randint(33000, 60000))

    early = connect_from(real_node, source, address)
    assert early.get("errno") == errno.ECONNREFUSED and early["seconds"] < 1, early

    kube.apply(token_service("early", namespace, clusterIP=address))
    wait_ready(kube, "server", namespace)
    eventually(
        lambda: token in real_node.run_in_netns(["curl", "-sS", "-m", "2", f"http://{address}/"]).stdout,
        timeout=60,
        what=f"the Service at {address} to answer",
    )
    late = connect_from(real_node, source, address)
    assert token in late.get("answer", ""), late


def test_service_and_pod_ranges_are_unreachable_from_the_host(real_node: RealNode) -> None:
    """The host routes only its own nodes' pods (via their veth); every other address of the Service,
    pod and kwok ranges is an `unreachable` route, and the node namespace has no way out."""
    other_slot = next(n for n in range(250, 1, -1) if not Path(f"/sys/class/net/smh{n}").exists())
    for address in [
        "10.96.0.1",
        "10.96.0.10",
        "10.96.15.254",
        f"10.201.{other_slot}.7",
        "10.244.0.9",
        f"10.200.{other_slot}.2",
    ]:
        assert_unreachable_from_host(address)
    own_pod = real_node.pod_cidr.rsplit(".", 1)[0] + ".7"
    assert f"via {real_node.ip} dev smh{real_node.slot.number}" in route_get(own_pod).stdout
    for cidr in (SERVICE_CIDR, KWOK_POD_CIDR, "10.201.0.0/16"):
        assert f"unreachable {cidr}" in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    # In the node's namespace: no default route (a documentation address stands for "anywhere else").
    proc = route_get("203.0.113.1", real_node.netns)
    assert proc.returncode != 0 and "unreachable" in proc.stderr.lower(), proc.stdout + proc.stderr
    routes = subprocess.run(["ip", "-n", real_node.slot.netns_name, "route"], capture_output=True, text=True)
    assert "default" not in routes.stdout


def test_the_pod_bridge_keeps_its_mac_as_pods_come_and_go(real_node: RealNode) -> None:
    """The pod bridge has a MAC of its own: a port with a lower MAC (as any pod's veth may have) joining and
    leaving does not change it, so the pods' ARP entries for the gateway stay right (nodenet.bridge_mac)."""
    ns = ["ip", "-n", real_node.slot.netns_name]

    def bridge_mac() -> str:
        out = subprocess.run([*ns, "-o", "link", "show", "smbr0"], capture_output=True, text=True, check=True)
        return out.stdout.split("link/ether ")[1].split()[0]

    assert bridge_mac() == real_node.slot.bridge_mac == f"0a:58:0a:c9:{real_node.slot.number:02x}:01"
    subprocess.run([*ns, "link", "add", "smmac0", "type", "veth", "peer", "name", "smmac1"], check=True)
    try:
        subprocess.run([*ns, "link", "set", "smmac0", "address", "02:00:00:00:00:01"], check=True)
        subprocess.run([*ns, "link", "set", "smmac0", "master", "smbr0"], check=True)
        assert bridge_mac() == real_node.slot.bridge_mac
    finally:
        subprocess.run([*ns, "link", "del", "smmac0"], check=True)
    assert bridge_mac() == real_node.slot.bridge_mac


def test_an_oci_archive_imported_under_a_name_runs(
    kube: Kube, real_node: RealNode, namespace: str, tmp_path: Path
) -> None:
    """import_image() takes an OCI archive as image builders write it (named by the OCI ref-name annotation
    only) and makes it available under the name pods use."""
    token = uuid.uuid4().hex
    packed = tmp_path / "packed.tar"
    packer = ROOT / "tools/controlplane/node/ociimage.py"
    subprocess.run(
        [sys.executable, str(packer), "--out", str(packed), "--ref", "x",
         "--add", "/bin/busybox:/bin/busybox:0755", "--symlink", "/bin/echo:busybox",
         "--cmd", json.dumps(["/bin/echo", token])],
        check=True,
    )  # fmt: skip
    archive = tmp_path / "image.tar"
    with tarfile.open(packed) as src, tarfile.open(archive, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if member.name == "index.json":
                index = json.loads(data)
                index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "built-here:1"}
                data = json.dumps(index).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if member.isfile() else None)

    assert (
        real_node.import_image(archive, "servedmodel/imported:test") == "docker.io/servedmodel/imported:test"
    )
    manifest = pod("imported", namespace, real_node, "", restartPolicy="Never")
    del manifest["spec"]["containers"][0]["command"]  # the image's own CMD
    manifest["spec"]["containers"][0]["image"] = "servedmodel/imported:test"
    kube.apply(manifest)

    def finished() -> dict[str, Any] | None:
        obj = kube.get("pod", "imported", namespace)
        return obj if obj and obj["status"].get("phase") in ("Succeeded", "Failed") else None

    obj = eventually(finished, timeout=60, what="the pod of the imported image to finish")
    assert obj["status"]["phase"] == "Succeeded"
    assert kube.kubectl("logs", "-n", namespace, "imported").stdout == f"{token}\n"


# -- lifecycle: start/stop, a killed run ------------------------------------------------------------


def test_start_and_stop_twice_leave_nothing(tmp_path: Path) -> None:
    firewall = host_firewall()
    for round_ in (1, 2):
        cluster = LocalCluster(workdir=tmp_path / f"round{round_}", with_kwok=False, with_real_node=True)
        cluster.start()
        try:
            assert cluster.real_node is not None and cluster.slot is not None
            slot = cluster.slot
            print(f"\n[figure] round {round_}: node start {cluster.real_node.timings}")
            assert host_firewall() == firewall, "the running node changed the host's iptables"
            sockets = slot.shim_sockets()
            assert any(path.exists() for path in sockets)  # CoreDNS's shim at least
        finally:
            cluster.stop()
        assert slot.leftovers() == []
        assert not [path for path in sockets if path.exists()]
        assert not slot.lock_path.exists()
        assert host_firewall() == firewall
        cluster.stop()  # idempotent


def test_a_killed_run_leaves_nothing_that_breaks_the_next_start(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    log = open(tmp_path / "harness.log", "wb")
    harness = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tools/controlplane/localcluster.py"),
            "up",
            "--dir",
            str(tmp_path / "killed"),
            "--real-node",
            "--ready-file",
            str(ready),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        eventually(
            lambda: ready.exists() or harness.poll() is not None, timeout=300, what="the harness to start"
        )
        assert harness.poll() is None, (tmp_path / "harness.log").read_text()[-3000:]
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
        log.close()
    server = (tmp_path / "killed" / "admin.kubeconfig").read_text()
    killed = Slot(int(re.search(r"https://10\.200\.(\d+)\.1:", server).group(1)))
    # What a SIGKILL leaves: the namespace, the pods' containers and their shims, their mounts.
    left = killed.leftovers()
    assert any(item.startswith("network namespace") for item in left), left
    assert any(item.startswith("process") for item in left), left
    sockets = [path for path in killed.shim_sockets() if path.exists()]
    assert sockets, "the killed node's shims left no sockets: nothing to check"

    cluster = LocalCluster(workdir=tmp_path / "next", with_kwok=False, with_real_node=True)
    cluster.start()
    try:
        assert cluster.real_node is not None
        if cluster.slot is None or cluster.slot.number != killed.number:
            assert killed.leftovers() == []
    finally:
        cluster.stop()
    assert killed.leftovers() == []
    assert not [path for path in sockets if path.exists()]
