"""A local OCI registry for tests and the demo: Debian's ``docker-registry`` (distribution 2.8), run by hand.

It listens on a loopback address only: the host's 127.0.0.1, or, with ``nsenter``, the 127.0.0.1 of a
real node's network namespace, where that node's containerd pulls from it over plain HTTP (containerd's
CRI speaks HTTP to loopback registries without configuration). Storage is a folder of its own; the process
dies with its parent (``PR_SET_PDEATHSIG``) and is stopped by pid.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from processes import die_with_parent, terminate

CONFIG = """version: 0.1
log:
  level: warn
  accesslog: {{disabled: true}}
storage:
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
http:
  addr: {addr}
"""


class RegistryError(RuntimeError):
    pass


class LocalRegistry:
    """``docker-registry serve`` on ``127.0.0.1:<port>``; ``wrap`` runs it elsewhere (``slot.nsenter``)."""

    def __init__(self, workdir: Path, port: int, wrap: Callable[..., list[str]] | None = None) -> None:
        self.workdir, self.port, self.wrap = Path(workdir), port, wrap
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """host:port, as image references name it (a pod's image reference starts with it)."""
        return f"127.0.0.1:{self.port}"

    def start(self, probe: Callable[[str], bool], timeout: float = 30) -> LocalRegistry:
        """Start, and wait until ``probe(url of /v2/)`` is true (probed from where the caller reaches it)."""
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryError(
                "docker-registry is not installed: run tools/dev/system-packages.sh (Debian package "
                "docker-registry)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(CONFIG.format(root=self.workdir / "storage", addr=self.address))
        cmd = [binary, "serve", str(config)]
        log = open(self.workdir / "registry.log", "wb")
        self.process = subprocess.Popen(
            self.wrap(*cmd) if self.wrap else cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RegistryError(f"docker-registry exited ({self.process.returncode}): {self.log_tail()}")
            if probe(f"http://{self.address}/v2/"):
                return self
            time.sleep(0.1)
        self.stop()
        raise RegistryError(
            f"docker-registry did not answer on {self.address} in {timeout}s: {self.log_tail()}"
        )

    def log_tail(self, size: int = 2000) -> str:
        try:
            return (self.workdir / "registry.log").read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self) -> None:
        terminate(self.process, timeout=10)
        self.process = None
