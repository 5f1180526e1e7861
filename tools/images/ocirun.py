"""Runs an image built by images.py with runc, the way a kubelet's runtime would, without a kubelet.

The image's oci-archive is unpacked with umoci into an OCI bundle; its runtime config is then tightened as
the chart and the export Job ask of a pod: the image's own non-root user, a read-only root file system,
no capabilities, no new privileges, a tmpfs on /tmp, and its own network namespace (only loopback) unless
the caller shares the host's to reach a loopback-only API server.

    with OciContainer(image, workdir, mounts=[Mount("/data", host_dir)]) as c:
        c.start(); ...; c.exec(["id", "-u"])

CLI: ``python tools/images/ocirun.py NAME [ARG ...]`` builds (or finds) the image and runs it in the
foreground that way: handy to poke at an image by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

from images import BuiltImage, build

LAYOUT_TAG = "image"


@dataclasses.dataclass(frozen=True)
class Mount:
    destination: str
    source: Path
    read_only: bool = True


class OciContainer:
    """One container of an image, run by runc from an unpacked bundle in workdir."""

    def __init__(
        self,
        image: BuiltImage,
        workdir: Path,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        mounts: list[Mount] | tuple[Mount, ...] = (),
        host_network: bool = False,
        command: list[str] | None = None,
    ):
        self.image = image
        self.workdir = workdir
        self.bundle = workdir / "bundle"
        self.runc_root = workdir / "runc"
        self.id = f"smtest-{uuid.uuid4().hex[:10]}"
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self.proc: subprocess.Popen | None = None
        self._unpack()
        self.config = self._configure(args, env or {}, mounts, host_network, command)

    # --- set-up ---------------------------------------------------------------------------------------

    def _unpack(self) -> None:
        layout = self.workdir / "layout"
        with tarfile.open(self.image.archive) as archive:
            archive.extractall(layout, filter="tar")
        # umoci names images by a plain tag; the archive carries the full reference.
        index_path = layout / "index.json"
        index = json.loads(index_path.read_text())
        for manifest in index["manifests"]:
            manifest.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = LAYOUT_TAG
        index_path.write_text(json.dumps(index))
        blob = layout / "blobs" / "sha256"
        manifest = json.loads((blob / index["manifests"][0]["digest"].split(":")[1]).read_text())
        self.image_config = json.loads((blob / manifest["config"]["digest"].split(":")[1]).read_text())
        subprocess.run(
            ["umoci", "unpack", "--image", f"{layout}:{LAYOUT_TAG}", str(self.bundle)],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(layout)

    def _configure(
        self,
        args: list[str] | None,
        env: dict[str, str],
        mounts,
        host_network: bool,
        command: list[str] | None,
    ) -> dict:
        path = self.bundle / "config.json"
        config = json.loads(path.read_text())
        process = config["process"]
        process["terminal"] = False
        if args is not None:
            entrypoint = self.image_config.get("config", {}).get("Entrypoint") or []
            process["args"] = [*entrypoint, *args]
        if command is not None:  # instead of the image's entrypoint and arguments
            process["args"] = list(command)
        process["env"] = [e for e in process.get("env", []) if e.split("=", 1)[0] not in env]
        process["env"] += [f"{k}={v}" for k, v in env.items()]
        process["noNewPrivileges"] = True
        process["capabilities"] = {
            k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
        }
        process.pop("rlimits", None)
        config["root"] = {"path": "rootfs", "readonly": True}
        config["hostname"] = "container"
        config["mounts"] = [m for m in config.get("mounts", []) if m["destination"] != "/tmp"]
        config["mounts"].append(
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=268435456"],
            }
        )
        for mount in mounts:
            config["mounts"].append(
                {
                    "destination": mount.destination,
                    "type": "bind",
                    "source": str(mount.source),
                    "options": ["rbind", "ro" if mount.read_only else "rw", "nosuid", "nodev"],
                }
            )
        namespaces = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "user"]
        if host_network:  # the host's namespace, for a loopback-only API server (nothing else is there)
            namespaces = [ns for ns in namespaces if ns["type"] != "network"]
            config["mounts"] = [m for m in config["mounts"] if m["destination"] not in ("/etc/hosts",)]
        elif not any(ns["type"] == "network" for ns in namespaces):
            namespaces.append({"type": "network"})
        config["linux"]["namespaces"] = namespaces
        config["linux"]["cgroupsPath"] = f"/{self.id}"  # runc delete removes it
        path.write_text(json.dumps(config, indent=2))
        return config

    @property
    def user(self) -> tuple[int, int]:
        user = self.config["process"]["user"]
        return user["uid"], user["gid"]

    # --- running ---------------------------------------------------------------------------------------

    def _runc(self, *args: str) -> list[str]:
        return ["runc", "--root", str(self.runc_root), *args]

    def start(self) -> None:
        """Starts the container's process in the background (output: stdout_path, stderr_path)."""
        self.runc_root.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self._runc("run", "--bundle", str(self.bundle), self.id),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def run(self, timeout: float) -> int:
        """Runs the container to its end; returns its exit code (output: stdout(), stderr())."""
        self.start()
        try:
            return self.wait(timeout)
        finally:
            self.stop()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        """Both streams, for messages."""
        return f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pid(self) -> int:
        """The host pid of the container's first process."""
        deadline = time.monotonic() + 10
        while True:
            proc = subprocess.run(self._runc("state", self.id), capture_output=True, text=True)
            if proc.returncode == 0:
                state = json.loads(proc.stdout)
                if state.get("pid"):
                    return int(state["pid"])
            if time.monotonic() > deadline:
                raise AssertionError(f"runc state {self.id}: {proc.stderr}\n{self.output()}")
            time.sleep(0.1)

    def exec(self, cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs cmd inside the running container, as its user, with its restrictions."""
        return subprocess.run(
            self._runc("exec", self.id, *cmd), capture_output=True, text=True, timeout=timeout
        )

    def stop(self) -> None:
        """Kills and deletes the container (its cgroups and mounts go with it)."""
        subprocess.run(self._runc("kill", self.id, "KILL"), capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(self._runc("delete", "--force", self.id), capture_output=True)

    def __enter__(self) -> OciContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stops the container and deletes its unpacked root file system (gigabytes for TensorFlow)."""
        self.stop()
        shutil.rmtree(self.bundle, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ocirun.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="image name (see images.py)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments after the image's entrypoint")
    parser.add_argument("--host-network", action="store_true", help="share the host's network namespace")
    opts = parser.parse_args(argv)
    image = build(opts.name)
    with tempfile.TemporaryDirectory(prefix="ocirun-") as tmp:
        container = OciContainer(image, Path(tmp), opts.args or None, host_network=opts.host_network)
        code = container.run(timeout=float(os.environ.get("OCIRUN_TIMEOUT", "3600")))
        sys.stdout.write(container.stdout())
        sys.stderr.write(container.stderr())
        return code


if __name__ == "__main__":
    sys.exit(main())
