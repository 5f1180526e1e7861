"""A real S3-compatible object store for the tests and the demo: SeaweedFS's `weed server -s3` (master,
volume server, filer and S3 gateway in one process), built from the Go module proxy by
build-objectstore.sh into the cache outside the clone.

    store = ObjectStore("127.0.0.1", tmp / "s3", credentials=("AKIDTEST", "secret")).start()
    store.create_bucket("models")
    boto3.client("s3", endpoint_url=store.endpoint, **store.client_kwargs())
    store.stop()

It binds only `bind_ip` (127.0.0.1, or a real node's host-side slot address 10.200.N.1 so pods reach it),
on free ports. With credentials, anonymous requests are refused (an S3 identities file is written into the
data folder); anonymous usage reporting is switched off, so nothing leaves the machine.

    python tools/controlplane/objectstore.py up --dir /tmp/s3 [--ip 127.0.0.1]   # start, print env, wait
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import processes

HERE = Path(__file__).resolve().parent
DEFAULT_REGION = "us-east-1"  # what SeaweedFS signs with unless told otherwise; boto3 needs one


class ObjectStoreError(RuntimeError):
    """The object store could not be built or started; the message says why (with the server's log tail)."""


def build_objectstore() -> Path:
    """Build (or find in the cache) SeaweedFS's `weed` and return its folder."""
    proc = subprocess.run(["bash", str(HERE / "build-objectstore.sh")], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise ObjectStoreError(
            f"building the object store (SeaweedFS) failed (exit {proc.returncode}); see the log above"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


def _free_ports(host: str, count: int) -> list[int]:
    """`count` distinct free ports on `host`, all held open until every one is chosen."""
    socks, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class ObjectStore:
    """One SeaweedFS server with its data in `data_dir`. `start()` returns once an object can be written."""

    bind_ip: str
    data_dir: Path
    # (access key, secret key) of an identity with every right; None: anonymous access (no identities).
    credentials: tuple[str, str] | None = None
    # Optional (access key, secret key) of an identity that may only read and list (a sync sidecar's).
    read_only_credentials: tuple[str, str] | None = None
    bin_dir: Path | None = None
    region: str = DEFAULT_REGION
    process: subprocess.Popen | None = field(default=None, repr=False)
    port: int = 0
    ports: list[int] = field(default_factory=list)
    startup_seconds: float = 0.0

    @property
    def endpoint(self) -> str:
        """http://ip:port of the S3 API."""
        return f"http://{self.bind_ip}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    @property
    def identities_path(self) -> Path:
        return self.data_dir / "s3-identities.json"

    @property
    def access_key(self) -> str | None:
        return self.credentials[0] if self.credentials else None

    @property
    def secret_key(self) -> str | None:
        return self.credentials[1] if self.credentials else None

    def client_kwargs(self, credentials: tuple[str, str] | None = None) -> dict[str, str]:
        """Keyword arguments for `boto3.client("s3", **kwargs)` (the admin identity unless told otherwise)."""
        key, secret = credentials or self.credentials or ("anonymous", "anonymous")
        return {
            "endpoint_url": self.endpoint,
            "region_name": self.region,
            "aws_access_key_id": key,
            "aws_secret_access_key": secret,
        }

    def env(self, credentials: tuple[str, str] | None = None) -> dict[str, str]:
        """The standard AWS environment variables that point a boto3 client (or our CLI) at this store."""
        kwargs = self.client_kwargs(credentials)
        return {
            "AWS_ENDPOINT_URL": kwargs["endpoint_url"],
            "AWS_REGION": kwargs["region_name"],
            "AWS_ACCESS_KEY_ID": kwargs["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": kwargs["aws_secret_access_key"],
        }

    def client(self, credentials: tuple[str, str] | None = None):
        """A boto3 S3 client for this store (path-style addressing, as SeaweedFS serves buckets)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
            **self.client_kwargs(credentials),
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` (already there is fine)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    # -- lifecycle ---------------------------------------------------------------------------------

    def _write_identities(self) -> None:
        identities = []
        if self.credentials:
            key, secret = self.credentials
            identities.append(
                {
                    "name": "admin",
                    "credentials": [{"accessKey": key, "secretKey": secret}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            )
        if self.read_only_credentials:
            key, secret = self.read_only_credentials
            identities.append(
                {
                    "name": "reader",
                    "credentials": [{"accessKey": key, "secretKey": secret}],
                    "actions": ["Read", "List"],
                }
            )
        self.identities_path.write_text(json.dumps({"identities": identities}, indent=2))
        self.identities_path.chmod(0o600)

    def start(self, timeout: float = 90) -> ObjectStore:
        if self.process is not None:
            return self
        if self.read_only_credentials and not self.credentials:
            raise ObjectStoreError(
                "read-only credentials need admin credentials too (anonymous: all or none)"
            )
        self.bin_dir = self.bin_dir or build_objectstore()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        ip = self.bind_ip
        self.ports = _free_ports(ip, 8)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self.ports
        self.port = s3
        args = [
            str(self.bin_dir / "weed"),
            "server",
            f"-dir={self.data_dir / 'data'}",
            f"-ip={ip}",
            f"-ip.bind={ip}",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",  # optional side APIs: not needed, no ports taken
            "-master.telemetry=false",  # no usage reports: nothing leaves the machine
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",  # small volumes, as many as the disk allows
            "-s3.autoCreateBucket=false",  # a missing bucket is an error the tests check, never created
            "-volume.preStopSeconds=0",  # no grace period for clients of a throw-away store
        ]
        if self.credentials:
            self._write_identities()
            args.append(f"-s3.config={self.identities_path}")
        log = open(self.log_path, "ab")
        started = time.monotonic()
        self.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
            start_new_session=True,
            preexec_fn=processes.die_with_parent,
        )
        log.close()
        try:
            self._wait_ready(started + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def _wait_ready(self, deadline: float) -> None:
        """The S3 gateway answers once master, volume server and filer are up: wait for any S3 answer
        (403 without credentials is an answer), then for a volume to be writable (a bucket can be made)."""
        assert self.process is not None
        url = f"{self.endpoint}/"
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ObjectStoreError(
                    f"SeaweedFS exited with code {self.process.returncode} while starting:\n{self._tail()}"
                )
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except urllib.error.HTTPError:
                break  # the gateway answers (403 when anonymous access is off)
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        else:
            raise ObjectStoreError(
                f"SeaweedFS's S3 API at {url} did not answer in time ({last}):\n{self._tail()}"
            )
        # Writes work only once the volume server has registered with the master (the first one takes
        # ~8 s): ready means an object could be written and read back.
        probe = "servedmodel-readiness-probe"
        while True:
            try:
                client = self.client()
                try:
                    client.create_bucket(Bucket=probe)
                except client.exceptions.BucketAlreadyOwnedByYou:
                    pass
                client.put_object(Bucket=probe, Key="probe", Body=b"ready")
                assert client.get_object(Bucket=probe, Key="probe")["Body"].read() == b"ready"
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not ready yet" until the deadline
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise ObjectStoreError(f"SeaweedFS's S3 API did not become usable ({last}):\n{self._tail()}")
            time.sleep(0.3)

    def rss_bytes(self) -> int:
        """Resident memory of the server process (for the notes: it is one process)."""
        if self.process is None:
            return 0
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout: float = 3) -> None:
        """SIGTERM, then SIGKILL after `timeout` (SeaweedFS may take half a minute to stop gracefully, and a
        throw-away test store has nothing worth flushing). Idempotent."""
        proc, self.process = self.process, None
        processes.terminate(proc, timeout)
        # SeaweedFS puts unix sockets named by port in /tmp and leaves them when killed.
        for port in self.ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def __enter__(self) -> ObjectStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the test object store (SeaweedFS S3) until Ctrl-C.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start it, print the AWS environment variables that reach it, wait")
    up.add_argument("--dir", type=Path, required=True, help="data folder (kept after stopping)")
    up.add_argument("--ip", default="127.0.0.1", help="the one address to bind (default 127.0.0.1)")
    up.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
    args = parser.parse_args(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    store = ObjectStore(args.ip, args.dir, credentials=("servedmodel", os.urandom(12).hex())).start()
    try:
        for bucket in args.bucket:
            store.create_bucket(bucket)
        for key, value in store.env().items():
            print(f"export {key}={value}")
        print(f"# started in {store.startup_seconds:.1f}s; Ctrl-C stops it", file=sys.stderr)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
