"""Network slots for test clusters: each running cluster holds one slot N, with its own network namespace
and veth pair, so several test runs on one machine never collide and no test traffic leaves the machine.

Slot N owns these addresses and names (nothing else on the machine uses them):

    host side of the veth   smhN    10.200.N.1/30   the API server binds this address only
    node side of the veth   smnN    10.200.N.2/30   in the network namespace servedmodel-node-N
    pod subnet              smbr0   10.201.N.0/24   a bridge in that namespace (the CNI bridge adopts it)
    cgroup                  /servedmodel-node-N     in every cgroup hierarchy, for the kubelet's cgroupRoot
    data                    /var/lib/servedmodel-nodes/slot-N, /run/servedmodel-nodes/slot-N

Before anything starts, the host namespace gets `unreachable` routes for the whole Service range, the pod
ranges and the link range: the machine forwards packets and has a default route out, so without them a
packet to a ClusterIP that only a node namespace knows would leave the machine. They are never removed
(they stay harmless safety nets); a slot's own, more specific routes win over them. The node namespace
has no default route.

A slot is held by an exclusive flock on /run/servedmodel-nodes/slot-N.lock for as long as the process that
took it lives. A run killed with SIGKILL releases the lock with its process; the next `acquire_slot()` finds
the slot's leftovers (processes, mounts, cgroups, namespace, links, files) and removes them first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = Path("/run/servedmodel-nodes")
DATA_ROOT = Path("/var/lib/servedmodel-nodes")
CGROUP_ROOT = Path("/sys/fs/cgroup")
SERVICE_CIDR = "10.96.0.0/20"
POD_RANGE = "10.201.0.0/16"
LINK_RANGE = "10.200.0.0/16"
KWOK_POD_CIDR = "10.244.0.0/24"
UNREACHABLE = [SERVICE_CIDR, POD_RANGE, LINK_RANGE, KWOK_POD_CIDR]
MAX_SLOTS = 250
BRIDGE = "smbr0"
# Host-wide kernel settings the kubelet sets when it starts (it cannot be told not to): saved before the
# first node starts, put back when the last node on the machine stops.
KUBELET_SYSCTLS = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
]


class NodeNetError(RuntimeError):
    """A slot could not be set up or cleaned; the message says what and why."""


def run(*cmd: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise NodeNetError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def require_root() -> None:
    if os.geteuid() != 0:
        raise NodeNetError(
            "the test cluster's network (a network namespace and veth pair per run) needs root; "
            "run the tests as root (CI and the development machines do)"
        )


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    """Held briefly while slots are taken, cleaned or released, so lock files can be created and removed
    without races."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(STATE_ROOT / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """The fd of an exclusive, non-inherited lock on `path`, or None when another process holds it."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)  # Python fds are close-on-exec: children never hold it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def ensure_unreachable_routes() -> None:
    existing = run("ip", "-4", "route", "show", "type", "unreachable").stdout.split()
    for cidr in UNREACHABLE:
        if cidr not in existing:
            run("ip", "route", "replace", "unreachable", cidr)


@dataclass
class Slot:
    number: int
    lock_fd: int | None = None

    # -- names and addresses -----------------------------------------------------------------------

    @property
    def host_ip(self) -> str:
        return f"10.200.{self.number}.1"

    @property
    def node_ip(self) -> str:
        return f"10.200.{self.number}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.201.{self.number}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"10.201.{self.number}.1"

    @property
    def bridge_mac(self) -> str:
        """A fixed, locally administered MAC for the pod bridge, from its gateway address (0a:58 + the IPv4
        address in hex, as Kubernetes' CNI bridges do). A bridge without one takes the lowest MAC of its
        ports and changes it as pods come and go: the pods' ARP entries for the gateway then point at a MAC
        that is gone, and their answers to the node are lost for seconds."""
        octets = [int(part) for part in self.pod_gateway.split(".")]
        return ":".join(f"{b:02x}" for b in [0x0A, 0x58, *octets])

    @property
    def netns_name(self) -> str:
        return f"servedmodel-node-{self.number}"

    @property
    def netns(self) -> Path:
        return Path("/run/netns") / self.netns_name

    @property
    def host_link(self) -> str:
        return f"smh{self.number}"

    @property
    def node_link(self) -> str:
        return f"smn{self.number}"

    @property
    def cgroup_name(self) -> str:
        return f"servedmodel-node-{self.number}"

    @property
    def lock_path(self) -> Path:
        return STATE_ROOT / f"slot-{self.number}.lock"

    @property
    def state_dir(self) -> Path:
        """Sockets, runtime state and the pods' network namespaces (tmpfs)."""
        return STATE_ROOT / f"slot-{self.number}"

    @property
    def data_dir(self) -> Path:
        """containerd's image store, the kubelet's root folder, pod logs (disk)."""
        return DATA_ROOT / f"slot-{self.number}"

    def nsenter(self, *cmd: str) -> list[str]:
        """`cmd` run in the slot's network namespace only (same mounts, same /sys: the kubelet's volume
        mounts stay visible to containerd and runc)."""
        return ["nsenter", f"--net={self.netns}", "--", *cmd]

    # -- network -----------------------------------------------------------------------------------

    def create_network(self) -> None:
        ns = ["ip", "-n", self.netns_name]
        run("ip", "netns", "add", self.netns_name)
        run(
            "ip",
            "link",
            "add",
            self.host_link,
            "type",
            "veth",
            "peer",
            "name",
            self.node_link,
            "netns",
            self.netns_name,
        )
        run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_link)
        run("ip", "link", "set", self.host_link, "up")
        run(*ns, "link", "set", "lo", "up")
        run(*ns, "addr", "add", f"{self.node_ip}/30", "dev", self.node_link)
        run(*ns, "link", "set", self.node_link, "up")
        # The pod bridge exists before containerd starts; the CNI bridge plugin adopts it. The Service range
        # is routed onto it so clients in the namespace get past routing before kube-proxy's DNAT applies;
        # what the DNAT leaves addressed to the range is refused (_reject_unrewritten_service_traffic).
        run(*ns, "link", "add", BRIDGE, "type", "bridge")
        run(*ns, "link", "set", BRIDGE, "address", self.bridge_mac)
        run(*ns, "addr", "add", f"{self.pod_gateway}/24", "dev", BRIDGE)
        run(*ns, "link", "set", BRIDGE, "up")
        run(*ns, "route", "add", SERVICE_CIDR, "dev", BRIDGE)
        self._reject_unrewritten_service_traffic()
        for key, value in [("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1")]:
            run(*self.nsenter("sh", "-c", f"[ ! -e /proc/sys/{key} ] || echo {value} > /proc/sys/{key}"))
        # Return route for the node's pods: more specific than the unreachable pod range.
        run("ip", "route", "replace", self.pod_cidr, "via", self.node_ip, "dev", self.host_link)

    def _reject_unrewritten_service_traffic(self) -> None:
        """Refuse at once any packet still addressed to the Service range after kube-proxy's DNAT: one sent
        to a Service kube-proxy has not programmed yet (an operator or test polling a Service it just
        created). Routed onto the bridge, such a SYN waited 3 s for an ARP answer nobody gives and left a
        conntrack entry without DNAT for 120 s; a later connection from the same namespace that happened to
        reuse its source port matched that entry, skipped the DNAT and failed with "No route to host"
        (one request in thousands of a traffic loop). Rejected in the filter table, the packet's conntrack
        entry is never confirmed, so nothing stale remains, and the early caller gets "connection refused"
        at once. OUTPUT covers the namespace's own clients, FORWARD the pods'; kube-proxy's own rules come
        first (it inserts its jumps at the top) and are never touched."""
        for chain in ("OUTPUT", "FORWARD"):
            run(*self.nsenter(
                "iptables", "-w", "-A", chain, "-d", SERVICE_CIDR,
                "-m", "comment", "--comment", "servedmodel-test: Service address kube-proxy did not rewrite",
                "-j", "REJECT",
            ))  # fmt: skip

    # -- cleanup -----------------------------------------------------------------------------------

    def cleanup_node(self) -> None:
        """Remove what a node in this slot leaves, keeping the slot's network: processes in its namespace
        and cgroups (containerd, shims, kubelet, kube-proxy, containers), mounts under its folders, its
        cgroups, the contents of its folders. Idempotent."""
        self._kill_processes()
        self._remove_shim_sockets()
        self._unmount_all()
        self._remove_cgroups()
        for link in Path("/var/log/containers").glob("*.log") if Path("/var/log/containers").is_dir() else []:
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(self.data_dir) + "/"):
                    link.unlink()
        for cached in Path("/var/lib/cni/results").glob(f"{self.netns_name}-*"):
            cached.unlink(missing_ok=True)
        for folder in (self.state_dir, self.data_dir):
            if _mounts_under(folder):
                raise NodeNetError(f"cannot empty {folder}: still mounted: {_mounts_under(folder)}")
            for entry in folder.iterdir() if folder.is_dir() else []:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Remove everything the slot may hold, whether its run stopped cleanly or was killed: the node's
        leftovers (cleanup_node), then the namespace, links, routes and folders. Idempotent."""
        self.cleanup_node()
        if self.netns.exists():
            run("ip", "netns", "del", self.netns_name, check=False)
        if Path(f"/sys/class/net/{self.host_link}").exists():
            run("ip", "link", "del", self.host_link, check=False)
        if run("ip", "route", "show", self.pod_cidr).stdout.strip():
            run("ip", "route", "del", self.pod_cidr, check=False)
        for folder in (self.state_dir, self.data_dir):
            shutil.rmtree(folder, ignore_errors=True)
        if self.netns.exists() or Path(f"/sys/class/net/{self.host_link}").exists():
            raise NodeNetError(f"slot {self.number}: network namespace or veth still present after cleanup")

    def leftovers(self) -> list[str]:
        """What of this slot still exists on the machine (empty after a complete cleanup)."""
        found = []
        if self.netns.exists():
            found.append(f"network namespace {self.netns}")
        if Path(f"/sys/class/net/{self.host_link}").exists():
            found.append(f"link {self.host_link}")
        found += [f"mount {m}" for m in _mounts_under(self.state_dir) + _mounts_under(self.data_dir)]
        found += [f"cgroup {p}" for p in self.cgroup_paths() if p.exists()]
        found += [f"process {pid}" for pid in sorted(set(self._cgroup_pids()) | set(self._netns_pids()))]
        found += [f"folder {d}" for d in (self.state_dir, self.data_dir) if d.exists()]
        if run("ip", "route", "show", self.pod_cidr).stdout.strip():
            found.append(f"route {self.pod_cidr}")
        return found

    def cgroup_paths(self) -> list[Path]:
        """The slot's cgroup in every mounted hierarchy (cgroup v1 controllers, name=systemd, unified)."""
        return [h / self.cgroup_name for h in _cgroup_hierarchies()]

    def create_cgroups(self) -> None:
        for path in self.cgroup_paths():
            path.mkdir(exist_ok=True)
            if path.parent.name == "cpuset" or (path / "cpuset.cpus").exists():
                for key in ("cpuset.cpus", "cpuset.mems"):
                    if (path / key).exists() and not (path / key).read_text().strip():
                        (path / key).write_text((path.parent / key).read_text())

    def _netns_pids(self) -> list[int]:
        if not self.netns.exists():
            return []
        out = run("ip", "netns", "pids", self.netns_name, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]

    def _cgroup_pids(self) -> list[int]:
        pids: set[int] = set()
        for root in self.cgroup_paths():
            if not root.exists():
                continue
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
        pids.discard(os.getpid())
        return sorted(pids)

    def _kill_processes(self, timeout: float = 20) -> None:
        """SIGKILL, by pid, every process in the slot's namespace (containerd, shims, kubelet, kube-proxy)
        and in its cgroups (the pods' containers), until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            pids = set(self._netns_pids()) | set(self._cgroup_pids())
            if not pids:
                return
            if time.monotonic() > deadline:
                raise NodeNetError(f"slot {self.number}: processes {sorted(pids)} did not exit")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def shim_sockets(self) -> list[Path]:
        """The sockets of this node's shims. containerd 1.6 puts them in the fixed folder /run/containerd/s,
        named by the hash of containerd's address, namespace and sandbox id; a killed shim leaves its socket
        there."""
        tasks = self.state_dir / "containerd" / "io.containerd.runtime.v2.task"
        address = self.state_dir / "containerd.sock"
        return [
            Path(
                "/run/containerd/s",
                hashlib.sha256(str(address / task.parent.name / task.name).encode()).hexdigest(),
            )
            for task in tasks.glob("*/*")
        ]

    def _remove_shim_sockets(self) -> None:
        for socket in self.shim_sockets():
            socket.unlink(missing_ok=True)

    def _unmount_all(self) -> None:
        for _ in range(5):
            mounts = _mounts_under(self.state_dir) + _mounts_under(self.data_dir)
            if not mounts:
                return
            for mount in sorted(mounts, key=lambda m: m.count("/"), reverse=True):
                if run("umount", mount, check=False).returncode != 0:
                    run("umount", "-l", mount, check=False)
        raise NodeNetError(f"slot {self.number}: could not unmount {mounts}")

    def _remove_cgroups(self) -> None:
        for root in self.cgroup_paths():
            if not root.exists():
                continue
            for path in sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()

    def release(self) -> None:
        """Clean the slot and give it up. Safe to call twice."""
        with _global_lock():
            self.cleanup()
            if self.lock_fd is not None:
                self.lock_path.unlink(missing_ok=True)
                os.close(self.lock_fd)
                self.lock_fd = None
            _restore_host_sysctls_if_idle()


def _cgroup_hierarchies() -> list[Path]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            mountpoint = Path(fields[4])
            if (
                fstype in ("cgroup", "cgroup2")
                and mountpoint.parent == CGROUP_ROOT
                or (fstype == "cgroup2" and mountpoint == CGROUP_ROOT)
            ):
                found.append(mountpoint)
    return found


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4].replace("\\040", " ")
            if mountpoint == str(folder) or mountpoint.startswith(prefix):
                found.append(mountpoint)
    return found


def _slot_numbers_present() -> set[int]:
    """Slots with anything on the machine: a lock file, folders, a namespace, a link or a cgroup."""
    numbers: set[int] = set()
    for path in [*STATE_ROOT.glob("slot-*"), *DATA_ROOT.glob("slot-*")]:
        tail = path.name.removeprefix("slot-").removesuffix(".lock")
        if tail.isdigit():
            numbers.add(int(tail))
    for path in Path("/run/netns").glob("servedmodel-node-*") if Path("/run/netns").is_dir() else []:
        if path.name.rsplit("-", 1)[-1].isdigit():
            numbers.add(int(path.name.rsplit("-", 1)[-1]))
    for path in Path("/sys/class/net").glob("smh*"):
        if path.name[3:].isdigit():
            numbers.add(int(path.name[3:]))
    for hierarchy in _cgroup_hierarchies():
        for path in hierarchy.glob("servedmodel-node-*"):
            if path.name.rsplit("-", 1)[-1].isdigit():
                numbers.add(int(path.name.rsplit("-", 1)[-1]))
    return numbers


def _clean_stale_slots() -> tuple[list[int], set[int]]:
    """Under the global lock: clean every slot whose lock no live process holds. Returns the slots cleaned
    and those that could not be (reported, and skipped by this run rather than failing it)."""
    cleaned, broken = [], set()
    for number in sorted(_slot_numbers_present()):
        slot = Slot(number)
        fd = _try_lock(slot.lock_path)
        if fd is None:
            continue  # a live run holds it
        try:
            slot.cleanup()
            slot.lock_path.unlink(missing_ok=True)
            cleaned.append(number)
        except (NodeNetError, OSError) as exc:
            print(
                f"[nodenet] WARNING: cannot clean the leftovers of slot {number}, skipping it: {exc}",
                flush=True,
            )
            broken.add(number)
        finally:
            os.close(fd)
    return cleaned, broken


def acquire_slot() -> Slot:
    """Take the lowest free slot and create its network. Cleans the leftovers of dead runs first."""
    require_root()
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    with _global_lock():
        ensure_unreachable_routes()
        cleaned, broken = _clean_stale_slots()
        if cleaned:
            print(f"[nodenet] cleaned leftovers of dead test runs in slots {cleaned}", flush=True)
            _restore_host_sysctls_if_idle()
        for number in range(1, MAX_SLOTS + 1):
            if number in broken:
                continue
            slot = Slot(number)
            fd = _try_lock(slot.lock_path)
            if fd is None:
                continue
            slot.lock_fd = fd
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
                slot.cleanup()
                slot.state_dir.mkdir(parents=True)
                slot.data_dir.mkdir(parents=True)
                slot.create_network()
            except BaseException:
                with contextlib.suppress(Exception):
                    slot.cleanup()
                slot.lock_path.unlink(missing_ok=True)
                os.close(fd)
                raise
            return slot
    raise NodeNetError(f"all {MAX_SLOTS} network slots are in use")


# -- host-wide kernel settings the kubelet changes -------------------------------------------------

SYSCTL_BACKUP = STATE_ROOT / "host-sysctls.json"


def save_host_sysctls() -> None:
    """Before a kubelet starts: remember the host's values, unless a running or dead node already did
    (then the saved values are the original ones)."""
    with _global_lock():
        if not SYSCTL_BACKUP.exists():
            values = {key: Path("/proc/sys", key).read_text().strip() for key in KUBELET_SYSCTLS}
            SYSCTL_BACKUP.write_text(json.dumps(values))


def _restore_host_sysctls_if_idle() -> None:
    """Under the global lock: put the saved values back when no slot on the machine is in use."""
    if not SYSCTL_BACKUP.exists():
        return
    for lock in STATE_ROOT.glob("slot-*.lock"):
        fd = _try_lock(lock)
        if fd is None:
            return  # another run's node may still rely on them
        os.close(fd)
    for key, value in json.loads(SYSCTL_BACKUP.read_text()).items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value)
    SYSCTL_BACKUP.unlink()
