"""A real node for the local test cluster: containerd + runc (Debian packages), the kubelet and kube-proxy
(built from the same Kubernetes module as the control plane), CNI bridge networking and CoreDNS, all in the
cluster's own network namespace (nodenet.py), so pods run for real: images are unpacked, probes executed by
the kubelet, volumes mounted, Services routed by kube-proxy, names answered by cluster DNS.

    cluster = LocalCluster(workdir, with_real_node=True).start()     # or cluster.start_real_node()
    node = cluster.real_node
    node.import_image(Path("operator.tar"), "servedmodel-operator:dev")  # an OCI archive (buildah push)
    pod_spec.update(node.pod_placement())       # nodeSelector + toleration: only such pods land there
    node.run_in_netns(["nc", "-z", cluster_ip, "80"])  # ClusterIPs and pod IPs are reachable from there

The node carries the label `servedmodel.io/test-node=real` and the taint
`servedmodel.io/real-node=true:NoSchedule`, so the kwok node keeps every other pod (scale tests stay fake).

Isolation from other runs on the machine: its own containerd root/state/sockets and runc root, its own
kubelet root folder and cgroup root (/servedmodel-node-N in every hierarchy), its own iptables (those of its
namespace). The host's iptables are never touched. `stop()` deletes the node's pods first, then stops
everything and removes what it left (processes, shims, mounts, cgroups); the cluster's `stop()` then removes
the namespace, veth pair and slot lock.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import processes
from nodenet import KWOK_POD_CIDR, Slot, save_host_sysctls

if TYPE_CHECKING:
    from localcluster import LocalCluster

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NODE_LABEL = ("servedmodel.io/test-node", "real")
NODE_TAINT = ("servedmodel.io/real-node", "true", "NoSchedule")
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
assert not KWOK_POD_CIDR.startswith("10.201."), "kwok's pod CIDR must not overlap the real nodes' pods"


# What a pod's /etc/resolv.conf says (the kubelet's ClusterFirst), with short timeouts for tests.
CLUSTER_RESOLV_CONF = (
    f"nameserver {DNS_SERVICE_IP}\nsearch svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
    "options ndots:5 timeout:1 attempts:2\n"
)


def write_cluster_resolv_conf(path: Path) -> Path:
    """A resolv.conf naming the cluster DNS Service (and nothing outside the machine) at `path`."""
    path.write_text(CLUSTER_RESOLV_CONF)
    return path


def with_resolv_conf(resolv_conf: Path, cmd: list[str]) -> list[str]:
    """`cmd` in a private mount namespace whose /etc/resolv.conf is `resolv_conf` (the host's file stays)."""
    script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            str(resolv_conf), *cmd]  # fmt: skip


class RealNodeError(RuntimeError):
    """The real node could not be built, started or stopped; the message says which part and why."""


def build_node_binaries() -> Path:
    """Install the Debian packages the node needs (once), build kubelet, kube-proxy, CoreDNS and the node's
    images (or find them in the cache); return the folder."""
    proc = subprocess.run(["bash", str(ROOT / "tools" / "dev" / "system-packages.sh")])
    if proc.returncode != 0:
        raise RealNodeError(f"installing the node's Debian packages failed (exit {proc.returncode})")
    proc = subprocess.run(["bash", str(HERE / "build-node.sh")], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RealNodeError(f"building the node binaries failed (exit {proc.returncode}); see the log above")
    return Path(proc.stdout.strip().splitlines()[-1])


def normalize_ref(ref: str) -> str:
    """The fully qualified name the container runtime looks an image up by, as Kubernetes does:
    `app:1` -> `docker.io/library/app:1`, `org/app` -> `docker.io/org/app:latest`."""
    name, at, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if slash else "library/" + name)
    elif first == "docker.io" and "/" not in rest:
        name = f"docker.io/library/{rest}"
    if ":" not in name.rsplit("/", 1)[-1] and not at:
        name += ":latest"
    return name + at + digest


def _archive_index(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        try:
            member = tar.getmember("index.json")
        except KeyError:
            raise RealNodeError(
                f"{archive} is not an OCI archive (no index.json); write one with "
                "`buildah push IMAGE oci-archive:FILE:NAME`"
            ) from None
        return json.load(tar.extractfile(member))  # type: ignore[arg-type]


def _name_index(index: dict[str, Any], name: str) -> dict[str, Any]:
    """The index with containerd's image-name annotation set to `name` on its (first amd64) manifest."""
    manifests = index.get("manifests") or []
    if not manifests:
        raise RealNodeError("the archive's index.json lists no image")
    amd64 = [m for m in manifests if (m.get("platform") or {}).get("architecture") in (None, "amd64")]
    target = (amd64 or manifests)[0]
    for m in manifests:
        m.setdefault("annotations", {}).pop("io.containerd.image.name", None)
    target["annotations"]["io.containerd.image.name"] = name
    return index


def _stream_renamed(archive: Path, name: str, sink: IO[bytes]) -> None:
    """Copy the archive to `sink` with index.json naming the image `name`, without a temporary copy."""
    with tarfile.open(archive, "r|*") as src, tarfile.open(fileobj=sink, mode="w|") as dst:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name.removeprefix("./") == "index.json":
                text = json.dumps(_name_index(json.load(data), name)).encode()  # type: ignore[arg-type]
                member.size = len(text)
                data = io.BytesIO(text)
            dst.addfile(member, data)


@dataclass
class RealNode:
    cluster: LocalCluster
    name: str = ""
    bin_dir: Path | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # pause/coredns/busybox -> image reference
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.cluster.slot is not None
        self.slot: Slot = self.cluster.slot
        self.name = self.name or f"real-node-{self.slot.number}"

    # -- what tests use ----------------------------------------------------------------------------

    @property
    def netns(self) -> Path:
        """The node's network namespace (nsenter --net=PATH)."""
        return self.slot.netns

    @property
    def ip(self) -> str:
        return self.slot.node_ip

    @property
    def pod_cidr(self) -> str:
        return self.slot.pod_cidr

    @property
    def test_image(self) -> str:
        """A tiny image (busybox: sh, httpd, nc, nslookup, ...) already in the node's runtime."""
        return self.images["busybox"]

    @staticmethod
    def pod_placement() -> dict[str, Any]:
        """Merge into a pod spec to run the pod on the real node (and only there)."""
        key, value, effect = NODE_TAINT
        return {
            "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
            "tolerations": [{"key": key, "operator": "Equal", "value": value, "effect": effect}],
        }

    @property
    def cluster_resolv_conf(self) -> Path:
        """A resolv.conf naming the cluster DNS Service, as a pod has (see `with_resolv_conf`)."""
        path = self.slot.data_dir / "cluster-resolv.conf"
        return path if path.exists() else write_cluster_resolv_conf(path)

    def netns_argv(self, cmd: list[str], cluster_dns: bool = False) -> list[str]:
        """The argv that runs `cmd` in the node's network namespace (with cluster DNS as its resolver, as a
        pod has, if `cluster_dns`): for a process the caller starts and watches itself."""
        return self.slot.nsenter(*(with_resolv_conf(self.cluster_resolv_conf, cmd) if cluster_dns else cmd))

    def run_in_netns(
        self,
        cmd: list[str],
        timeout: float = 60,
        check: bool = False,
        cluster_dns: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `cmd` in the node's network namespace, where ClusterIPs and pod IPs are reachable (the host's
        namespace routes them nowhere, by design). With `cluster_dns`, names resolve as in a pod
        (`<service>.<namespace>.svc`) through the cluster DNS Service. `env` is added to the environment."""
        argv = self.netns_argv(cmd, cluster_dns)
        full_env = {**os.environ, **env} if env else None
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env)
        if check and proc.returncode != 0:
            raise RealNodeError(f"{' '.join(cmd)} in {self.netns} failed: {proc.stderr.strip()}")
        return proc

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """containerd's own client against this node's containerd, in the namespace the kubelet uses."""
        cmd = ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RealNodeError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def import_image(self, archive: Path, ref: str) -> str:
        """Import an OCI image archive (as `buildah push IMAGE oci-archive:FILE` writes it) into the node's
        runtime under `ref`, so pods naming `ref` start without any registry (`imagePullPolicy: Never` or
        `IfNotPresent`). Returns the full reference. The image is stored under that normalized name only:
        the CRI resolves every name an image has as a normalized reference."""
        want = normalize_ref(ref)
        archive = Path(archive)
        names = {
            (m.get("annotations") or {}).get("io.containerd.image.name")
            for m in _archive_index(archive).get("manifests", [])
        }
        if names == {want}:
            self.ctr("images", "import", str(archive))
        else:
            cmd = [
                "ctr",
                f"--address={self.containerd_socket}",
                "--namespace=k8s.io",
                "images",
                "import",
                "-",
            ]
            with tempfile.TemporaryFile() as out:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=out)
                assert proc.stdin is not None
                try:
                    _stream_renamed(archive, want, proc.stdin)
                finally:
                    proc.stdin.close()
                    proc.wait(timeout=300)
                out.seek(0)
                if proc.returncode != 0:
                    raise RealNodeError(
                        f"ctr images import of {archive} failed: {out.read().decode()[-2000:]}"
                    )
        if want not in self.ctr("images", "ls", "-q").stdout.split():
            raise RealNodeError(f"importing {archive}: no image named {want} appeared")
        return want

    # -- paths -------------------------------------------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        return self.slot.state_dir / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.slot.data_dir / "kubelet"

    def _log(self, component: str) -> Path:
        assert self.cluster.log_dir is not None
        return self.cluster.log_dir / f"{self.name}-{component}.log"

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> RealNode:
        started = time.monotonic()
        deadline = started + timeout
        if self.bin_dir is None:
            self.bin_dir = build_node_binaries()
        manifest = json.loads((self.bin_dir / "images.json").read_text())
        self.images = {name: normalize_ref(entry["ref"]) for name, entry in manifest.items()}
        try:
            self.slot.cleanup_node()  # a node stopped before in this slot left nothing, but be sure
            self._prepare()
            t = time.monotonic()
            self._start_containerd(deadline)
            for name, entry in manifest.items():
                self.import_image(self.bin_dir / entry["archive"], entry["ref"])
            self.timings["containerd_and_images_s"] = round(time.monotonic() - t, 2)
            t = time.monotonic()
            save_host_sysctls()
            self._start_kubelet()
            self._start_kube_proxy()
            self._wait_ready(deadline)
            self.timings["kubelet_to_ready_s"] = round(time.monotonic() - t, 2)
            t = time.monotonic()
            self._start_dns(deadline)
            self.timings["dns_ready_s"] = round(time.monotonic() - t, 2)
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = round(time.monotonic() - started, 2)
        print(f"[realnode] {self.name} ready in {self.timings['start_s']}s {self.timings}", flush=True)
        return self

    def stop(self, pod_timeout: float = 30) -> None:
        """Delete the node's pods (while the kubelet still runs, so it stops them properly), stop the
        kubelet, kube-proxy (and its rules) and containerd, then remove every process, shim, mount and
        cgroup the node left. The slot's network stays for the cluster to release. Idempotent."""
        kubelet_up = processes.alive(self.processes.get("kubelet"))
        if kubelet_up and self.cluster.processes.get("kube-apiserver") is not None:
            self._delete_pods(pod_timeout)
        for name in ("kube-proxy", "kubelet"):
            processes.terminate(self.processes.pop(name, None))
        if (self.bin_dir is not None) and self.slot.netns.exists():
            subprocess.run(
                self.slot.nsenter(str(self.bin_dir / "kube-proxy"), "--cleanup"),
                capture_output=True,
                timeout=60,
            )
        processes.terminate(self.processes.pop("containerd", None))
        self.slot.cleanup_node()
        if self.cluster.processes.get("kube-apiserver") is not None:
            self.cluster.kubectl(
                "delete", "node", self.name, "--ignore-not-found", "--wait=false", check=False
            )

    def _delete_pods(self, timeout: float) -> None:
        selector = f"spec.nodeName={self.name}"
        self.cluster.kubectl("cordon", self.name, check=False)
        self.cluster.kubectl(
            "delete",
            "pods",
            "--all-namespaces",
            f"--field-selector={selector}",
            "--grace-period=1",
            "--wait=false",
            check=False,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.cluster.kubectl(
                "get", "pods", "--all-namespaces", f"--field-selector={selector}", "-o", "name", check=False
            )
            if proc.returncode == 0 and not proc.stdout.strip():
                return
            time.sleep(0.5)
        print(
            f"[realnode] pods on {self.name} still present after {timeout}s; removing them by force",
            flush=True,
        )

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        proc = processes.spawn(self.slot.nsenter(*args), self._log(name))
        self.processes[name] = proc
        return proc

    def _check_alive(self, name: str) -> None:
        report = processes.exit_report(self.processes[name], f"{name} of {self.name}", self._log(name))
        if report is not None:
            raise RealNodeError(report)

    def _prepare(self) -> None:
        slot, pki = self.slot, self.cluster.workdir / "pki"
        for folder in ("containerd", "kubelet", "pod-logs", "opt"):
            (slot.data_dir / folder).mkdir(parents=True, exist_ok=True)
        for folder in ("containerd", "runc", "cni", "cni-ipam"):
            (slot.state_dir / folder).mkdir(parents=True, exist_ok=True)
        slot.create_cgroups()
        from localcluster import issue_client_cert

        for component, user, groups in [
            ("kubelet", f"system:node:{self.name}", ["system:nodes"]),
            ("kube-proxy", "system:kube-proxy", []),
        ]:
            crt, key = issue_client_cert(pki, f"{self.name}-{component}", user, groups)
            (slot.state_dir / f"{component}.kubeconfig").write_text(
                f"""apiVersion: v1
kind: Config
clusters: [{{name: local, cluster: {{server: "{self.cluster.server}", certificate-authority: "{pki / "ca.crt"}"}}}}]
users: [{{name: {component}, user: {{client-certificate: "{crt}", client-key: "{key}"}}}}]
contexts: [{{name: local, context: {{cluster: local, user: {component}}}}}]
current-context: local
"""
            )
        # The kubelet reads its node, the kube-proxy Services and EndpointSlices (reference: real-node.md).
        self.cluster.kubectl("apply", "-f", "-", input=NODE_RBAC)
        (slot.state_dir / "cni" / "10-servedmodel.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": slot.netns_name,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "smbr0",
                            "isGateway": True,
                            "ipMasq": False,  # pods' traffic keeps its address and never leaves anyway
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": slot.pod_cidr, "gateway": slot.pod_gateway}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(slot.state_dir / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=1,
            )
        )
        # The pods' DNS is the cluster's; nothing on this node may point at a resolver outside the machine.
        (slot.data_dir / "resolv.conf").write_text("# no upstream resolver: cluster DNS only\n")

    def _start_containerd(self, deadline: float) -> None:
        slot = self.slot
        config = slot.state_dir / "containerd.toml"
        config.write_text(
            CONTAINERD_CONFIG.format(
                root=slot.data_dir / "containerd",
                state=slot.state_dir / "containerd",
                socket=self.containerd_socket,
                opt=slot.data_dir / "opt",
                pause=self.images["pause"],
                runc_root=slot.state_dir / "runc",
                cni_conf=slot.state_dir / "cni",
            )
        )
        self._spawn("containerd", ["containerd", f"--config={config}", "--log-level=warn"])
        while time.monotonic() < deadline:
            self._check_alive("containerd")
            if (
                self.containerd_socket.exists()
                and self.ctr("version", check=False, timeout=10).returncode == 0
            ):
                return
            time.sleep(0.1)
        raise RealNodeError("containerd did not answer on its socket in time")

    def _start_kubelet(self) -> None:
        assert self.bin_dir is not None
        slot, pki = self.slot, self.cluster.workdir / "pki"
        key, value, effect = NODE_TAINT
        config = slot.state_dir / "kubelet.yaml"
        config.write_text(
            KUBELET_CONFIG.format(
                address=slot.node_ip,
                ca=pki / "ca.crt",
                cgroup_root=f"/{slot.cgroup_name}",
                socket=self.containerd_socket,
                dns=DNS_SERVICE_IP,
                domain=CLUSTER_DOMAIN,
                resolv=slot.data_dir / "resolv.conf",
                pod_logs=slot.data_dir / "pod-logs",
                taint_key=key,
                taint_value=value,
                taint_effect=effect,
            )
        )
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={slot.state_dir / 'kubelet.kubeconfig'}",
                f"--root-dir={self.kubelet_dir}",
                f"--cert-dir={self.kubelet_dir / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={slot.node_ip}",
                f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        assert self.bin_dir is not None
        slot = self.slot
        config = slot.state_dir / "kube-proxy.yaml"
        config.write_text(
            KUBE_PROXY_CONFIG.format(
                kubeconfig=slot.state_dir / "kube-proxy.kubeconfig", name=self.name, pods=slot.pod_cidr
            )
        )
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={config}", "--v=1"])

    def _wait_ready(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            for name in ("kubelet", "kube-proxy", "containerd"):
                self._check_alive(name)
            proc = self.cluster.kubectl("get", "node", self.name, "-o", "json", check=False)
            if proc.returncode == 0:
                conditions = json.loads(proc.stdout).get("status", {}).get("conditions") or []
                ready = [c for c in conditions if c["type"] == "Ready"]
                if ready and ready[0]["status"] == "True":
                    return
                last = ready[0].get("message", "") if ready else "no Ready condition yet"
            else:
                last = proc.stderr.strip()
            time.sleep(0.2)
        raise RealNodeError(f"node {self.name} did not become Ready in time (last: {last})")

    def _start_dns(self, deadline: float) -> None:
        """CoreDNS as a pod on this node behind Service 10.96.0.10; returns once it is Ready."""
        key, value, effect = NODE_TAINT
        self.cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=COREDNS_MANIFEST.format(
                image=self.images["coredns"],
                dns_ip=DNS_SERVICE_IP,
                domain=CLUSTER_DOMAIN,
                label_key=NODE_LABEL[0],
                label_value=NODE_LABEL[1],
                taint_key=key,
                taint_value=value,
                taint_effect=effect,
            ),
        )
        last = ""
        while time.monotonic() < deadline:
            for name in ("kubelet", "kube-proxy", "containerd"):
                self._check_alive(name)
            proc = self.cluster.kubectl(
                "get",
                "pods",
                "-n",
                "kube-system",
                "-l",
                "k8s-app=kube-dns",
                f"--field-selector=spec.nodeName={self.name}",
                "-o",
                "json",
                check=False,
            )
            if proc.returncode == 0:
                pods = json.loads(proc.stdout)["items"]
                for pod in pods:
                    conds = pod.get("status", {}).get("conditions") or []
                    if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                        return
                last = json.dumps([p.get("status", {}) for p in pods])[-1500:]
            time.sleep(0.3)
        raise RealNodeError(f"CoreDNS on {self.name} did not become Ready in time: {last}")


NODE_RBAC = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: servedmodel-test-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: system:nodes}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: servedmodel-test-kube-proxy}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node-proxier}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:kube-proxy}]
"""

CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # This machine's root lacks CAP_SYS_RESOURCE: runc may not lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc_root}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""

KUBELET_CONFIG = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true, cacheTTL: 10s}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
  webhook: {{cacheAuthorizedTTL: 10s, cacheUnauthorizedTTL: 5s}}
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
imageServiceEndpoint: unix://{socket}
clusterDNS: [{dns}]
clusterDomain: {domain}
resolvConf: {resolv}
podLogsDir: {pod_logs}
# ConfigMap volume updates reach pods within about this period (the default, 1m, makes tests wait).
syncFrequency: 10s
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerWithTaints: [{{key: {taint_key}, value: "{taint_value}", effect: {taint_effect}}}]
"""

KUBE_PROXY_CONFIG = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {name}
mode: iptables
clusterCIDR: {pods}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# conntrack settings are host-wide: leave them alone.
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
iptables: {{localhostNodePorts: false}}
"""

COREDNS_MANIFEST = """apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: servedmodel-test:coredns}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: servedmodel-test:coredns}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: servedmodel-test:coredns}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  # Cluster names only: no forward plugin, the test cluster has no upstream resolver.
  Corefile: |
    .:53 {{
        errors
        health :8080
        ready :8181
        kubernetes {domain} in-addr.arpa ip6.arpa {{
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 5
        }}
        cache 5
        loadbalance
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: coredns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-dns}}}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      terminationGracePeriodSeconds: 1
      nodeSelector: {{{label_key}: {label_value}}}
      tolerations: [{{key: {taint_key}, operator: Equal, value: "{taint_value}", effect: {taint_effect}}}]
      containers:
      - name: coredns
        image: {image}
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {{name: dns, containerPort: 53, protocol: UDP}}
        - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
        readinessProbe:
          httpGet: {{path: /ready, port: 8181}}
          periodSeconds: 1
        livenessProbe:
          httpGet: {{path: /health, port: 8080}}
          periodSeconds: 10
        resources:
          requests: {{cpu: 10m, memory: 30Mi}}
          limits: {{memory: 170Mi}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {{add: [NET_BIND_SERVICE], drop: [ALL]}}
        volumeMounts: [{{name: config, mountPath: /etc/coredns, readOnly: true}}]
      volumes:
      - name: config
        configMap: {{name: coredns}}
---
apiVersion: v1
kind: Service
metadata: {{name: kube-dns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  clusterIP: {dns_ip}
  selector: {{k8s-app: kube-dns}}
  ports:
  - {{name: dns, port: 53, protocol: UDP}}
  - {{name: dns-tcp, port: 53, protocol: TCP}}
"""
