"""servedmodel-sync: mirror the complete versions a model server needs from S3 into its local folder.

Runs as a sidecar of every model server pod of a ServedModel with ``spec.storage.s3`` (from the exporter
image; no TensorFlow here). Each pass:

1. reads the version policy from the models.config TF Serving itself reads (so a policy edit applies
   without a restart), and lists the bucket's **complete** versions (those with a commit marker,
   layout.py): objects of a version without its marker (an upload under way, or killed) are never taken;
2. deletes local versions the policy no longer wants, but only once TF Serving no longer reports them
   (it unloads them itself when newer ones appear or the policy changes; deleting a loaded version's
   files under it would be the only way to break a served version);
3. downloads each wanted version that is missing into a ``.staging-*`` folder (a name TF Serving
   ignores), checks every object's size and sha256 against the marker, and renames the folder to its
   number in one step, exactly as the exporter publishes on a volume (publish.ModelDir). A version that
   does not fit in the emptyDir's size limit next to what is there is not downloaded, and is reported.

State (first sync done, the store's last error, versions too big) is served as JSON on ``/v1/sync``;
``/ready`` answers 200 once the first sync is done (the pod's readiness waits for it), ``/healthz``
while the process runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import PublishError
from ..publish import DELETING_PREFIX, ModelDir, fsync_tree, make_readable
from . import layout
from .client import s3_client

log = logging.getLogger("servedmodel-sync")

CHUNK = 1 << 20
# TF Serving states in which the server still holds (or is about to hold) a version's files.
HELD_STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING")
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_UNITS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60})
_QUANTITY = re.compile(r"^\+?((?:[0-9]+(?:\.[0-9]*)?)|(?:\.[0-9]+))([KMGTPE]i|[kMGTPE])?$")


def quantity_bytes(text: str) -> int:
    """A Kubernetes quantity (10Gi, 500M, 1048576) in bytes."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"not a size: {text!r} (use a quantity such as 10Gi)")
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


# -- the version policy, as TF Serving is given it ------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    kind: str = "latest"  # latest | specific | all
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def wanted(self, complete: list[int]) -> list[int]:
        """The versions of ``complete`` this policy serves, highest first."""
        ordered = sorted(set(complete), reverse=True)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[: self.num_versions]


def read_policy(config_text: str) -> Policy:
    """The model_version_policy of a ModelServerConfig in text format (as the operator renders it)."""
    specific = re.search(r"specific\s*\{([^}]*)\}", config_text)
    if specific:
        versions = tuple(int(v) for v in re.findall(r"versions:\s*(\d+)", specific.group(1)))
        return Policy("specific", versions=versions)
    latest = re.search(r"latest\s*\{\s*num_versions:\s*(\d+)", config_text)
    if latest:
        return Policy("latest", num_versions=int(latest.group(1)))
    if re.search(r"model_version_policy\s*\{\s*all\s*\{", config_text):
        return Policy("all")
    return Policy()  # TF Serving's default: the latest version


# -- what TF Serving reports ------------------------------------------------------------------------


def served_versions(status_url: str, timeout: float = 3.0) -> set[int] | None:
    """Versions TF Serving still holds (START..UNLOADING); None when it cannot be asked (then nothing may
    be deleted: the server may hold anything)."""
    try:
        with urllib.request.urlopen(status_url, timeout=timeout) as resp:
            payload = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # the server is up and knows no version of the model
            return set()
        return None
    except (OSError, ValueError):
        return None
    return {
        int(entry.get("version", 0))
        for entry in payload.get("model_version_status") or []
        if entry.get("state") in HELD_STATES
    }


# -- the sync ---------------------------------------------------------------------------------------


class SyncError(Exception):
    """A pass failed; ``code`` is the store's error code (AccessDenied, NoSuchBucket, ...) or our own."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def store_error(exc: BaseException, what: str) -> SyncError:
    """The store's own code and message for a botocore error, with what we were doing."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        err = response["Error"]
        code = str(err.get("Code") or "Error")
        message = str(err.get("Message") or "") or _http_reason(code, response)
        return SyncError(code, f"{message} ({what})")
    name = exc.__class__.__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return SyncError("NoCredentials", f"{exc} ({what})")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):  # noqa: E501
        return SyncError("EndpointUnreachable", f"{exc} ({what})")
    return SyncError(name, f"{exc} ({what})")


def _http_reason(code: str, response: dict[str, Any]) -> str:
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return {"403": "Access Denied", "404": "Not Found"}.get(str(code) or str(status), f"HTTP {status}")


@dataclass
class State:
    first_sync_done: bool = False
    versions: list[int] = field(default_factory=list)
    error: SyncError | None = None
    too_big: list[tuple[int, int]] = field(default_factory=list)
    limit_bytes: int = 0
    free_bytes: int = 0
    last_sync: float = 0.0
    downloaded: dict[int, float] = field(default_factory=dict)  # version -> when it was renamed in

    def to_json(self) -> dict[str, Any]:
        return {
            "firstSyncDone": self.first_sync_done,
            "versions": sorted(self.versions),
            "error": None if self.error is None else {"code": self.error.code, "message": self.error.message},
            "tooBig": [{"version": v, "bytes": b} for v, b in self.too_big],
            "limitBytes": self.limit_bytes,
            "freeBytes": self.free_bytes,
            "lastSync": self.last_sync,
            "downloadedAt": {str(v): t for v, t in sorted(self.downloaded.items())},
        }


def tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def model_path(prefix: str, model: str) -> str:
    """<prefix>/<model>, as users name the folder in messages."""
    return f"{prefix.strip('/')}/{model}" if prefix.strip("/") else model


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or ".." in rel.parts:
        raise SyncError("InvalidMarker", f"the commit marker lists an unsafe object path {path!r}")
    return rel


@dataclass
class Syncer:
    client: Any  # a boto3 S3 client
    bucket: str
    prefix: str
    model: str
    dest: Path  # the model's folder TF Serving reads (its base_path)
    limit_bytes: int
    model_config: Path | None = None
    status_url: str = ""  # TF Serving's GET /v1/models/<model>
    state: State = field(default_factory=State)

    def __post_init__(self) -> None:
        self.dir = ModelDir(self.dest.parent, self.dest.name)
        self.dir.ensure()
        self.state.limit_bytes = self.limit_bytes

    def policy(self) -> Policy:
        if self.model_config is None:
            return Policy()
        try:
            return read_policy(self.model_config.read_text())
        except OSError:
            return Policy()

    def sync_once(self) -> State:
        """One pass; the state says what happened (never raises for the store's errors)."""
        state = self.state
        try:
            with self.dir.lock():
                self.dir.clean_leftovers()
                self._pass(self.policy())
            state.error = None
            state.first_sync_done = True
        except SyncError as exc:
            log.warning("sync failed: %s", exc)
            state.error = exc
        except PublishError as exc:
            log.warning("sync failed: %s", exc)
            state.error = SyncError("LocalError", str(exc))
        state.versions = sorted(self.dir.versions())
        state.free_bytes = max(0, self.limit_bytes - tree_bytes(self.dir.root))
        state.last_sync = time.time()
        return state

    def _pass(self, policy: Policy) -> None:
        where = f"s3://{self.bucket}/{model_path(self.prefix, self.model)}/"
        try:
            complete = layout.complete_versions(self.client, self.bucket, self.prefix, self.model)
        except Exception as exc:  # botocore's errors: the store's code and message, as users see them
            raise store_error(exc, f"listing {where}") from exc
        wanted = policy.wanted(complete)
        self._remove_unwanted(set(wanted))
        present = self.dir.versions()
        too_big = []
        for version in wanted:
            if version in present:
                continue
            size = self._download(version)
            if size is not None:
                too_big.append((version, size))
        self.state.too_big = too_big

    def _remove_unwanted(self, wanted: set[int]) -> None:
        local = self.dir.versions()
        leaving = sorted(set(local) - wanted)
        if not leaving:
            return
        held = served_versions(self.status_url) if self.status_url else set()
        if held is None:
            log.info("versions %s leave the policy; TF Serving cannot be asked yet: kept", leaving)
            return
        for version in leaving:
            if version in held:
                continue  # TF Serving still has it: deleted on a later pass, once it unloaded it
            doomed = self.dir.root / f"{DELETING_PREFIX}{version}-{secrets.token_hex(4)}"
            os.rename(local[version], doomed)  # never a half-deleted numeric folder
            shutil.rmtree(doomed, ignore_errors=True)
            self.state.downloaded.pop(version, None)
            log.info("removed version %d (left the policy, unloaded by TF Serving)", version)

    def _download(self, version: int) -> int | None:
        """Download, verify and rename one version; returns its size when it does not fit (not fetched)."""
        try:
            marker = layout.read_marker(self.client, self.bucket, self.prefix, self.model, version)
        except layout.MarkerError as exc:
            raise SyncError("InvalidMarker", f"the commit marker of version {version}: {exc}") from exc
        except Exception as exc:
            raise store_error(exc, f"reading the commit marker of version {version}") from exc
        if marker is None:  # listed complete a moment ago: deleted since (a gc); not ours to serve
            return None
        objects = marker.objects
        size = marker.total_size
        free = self.limit_bytes - tree_bytes(self.dir.root)
        if size > free:
            log.warning(
                "version %d needs %d bytes, %d free of the %d-byte limit: not downloaded",
                version, size, free, self.limit_bytes,
            )  # fmt: skip
            return size
        staging = self.dir.new_staging()
        try:
            base = layout.version_prefix(self.prefix, self.model, version)
            for obj in objects:
                rel = _safe_relative(obj.path)
                target = staging.path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self._fetch(f"{base}{rel}", target, obj.size, obj.sha256, version)
            fsync_tree(staging.path)
            make_readable(staging.path)
            self.dir.commit(staging, version)  # the no-replace rename the volume publisher uses
        except BaseException:
            staging.discard()
            raise
        self.state.downloaded[version] = time.time()
        log.info("version %d synced (%d objects, %d bytes)", version, len(objects), size)
        return None

    def _fetch(self, key: str, target: Path, size: int, sha256: str, version: int) -> None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:
            raise store_error(exc, f"reading s3://{self.bucket}/{key}") from exc
        digest, written = hashlib.sha256(), 0
        with open(target, "wb") as out:
            while True:
                try:
                    chunk = body.read(CHUNK)
                except Exception as exc:
                    raise store_error(exc, f"reading s3://{self.bucket}/{key}") from exc
                if not chunk:
                    break
                written += len(chunk)
                if written > size:
                    break
                digest.update(chunk)
                out.write(chunk)
        if written != size or digest.hexdigest() != sha256:
            raise SyncError(
                "VerificationFailed",
                f"s3://{self.bucket}/{key} of version {version} does not match its commit marker "
                f"({written} bytes, sha256 {digest.hexdigest()[:12]}...; the marker says {size} bytes, "
                f"{sha256[:12]}...): not served",
            )


# -- the HTTP side ----------------------------------------------------------------------------------


def serve(state: State, port: int, host: str = "") -> ThreadingHTTPServer:
    """/healthz, /ready (first sync done) and /v1/sync (the state as JSON), on a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/healthz":
                self._send(200, {"ok": True})
            elif self.path == "/ready":
                self._send(200 if state.first_sync_done else 503, {"ready": state.first_sync_done})
            elif self.path == "/v1/sync":
                self._send(200, state.to_json())
            else:
                self._send(404, {"error": f"no such path {self.path}: /healthz, /ready or /v1/sync"})

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass  # probes every few seconds: not worth a log line each

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="sync-http", daemon=True).start()
    return server


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="servedmodel-sync",
        description=(
            "Mirror the complete versions of one model from S3 into the folder TF Serving reads: only "
            "versions with a commit marker, verified, renamed into place; versions leaving the policy are "
            "deleted after TF Serving unloads them. Credentials: the AWS SDK's (AWS_ACCESS_KEY_ID, ...)."
        ),
    )
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", default="", help="key prefix of the model folders (default: the bucket root)")
    p.add_argument("--model", required=True, help="the model folder under the prefix")
    p.add_argument("--dest", required=True, type=Path, help="the local model folder (TF Serving's base path)")
    p.add_argument("--model-config", type=Path, help="TF Serving's models.config: the version policy")
    p.add_argument("--server", default="", help="TF Serving's status URL, e.g. http://127.0.0.1:8501/v1/models/m")
    p.add_argument("--size-limit", default="10Gi", help="bytes the local folder may hold (a quantity)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between passes (default 10)")
    p.add_argument("--port", type=int, default=8502, help="HTTP port of /healthz, /ready, /v1/sync")
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL", ""))
    p.add_argument("--region", default=os.environ.get("AWS_REGION", ""))
    p.add_argument("--once", action="store_true", help="one pass, then exit (1 when it failed)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        limit = quantity_bytes(args.size_limit)
    except ValueError as exc:
        print(f"servedmodel-sync: --size-limit: {exc}", file=sys.stderr)
        return 2
    syncer = Syncer(
        client=s3_client(args.endpoint_url, args.region),
        bucket=args.bucket,
        prefix=args.prefix.strip("/"),
        model=args.model,
        dest=args.dest,
        limit_bytes=limit,
        model_config=args.model_config,
        status_url=args.server,
    )
    if args.once:
        state = syncer.sync_once()
        print(json.dumps(state.to_json(), indent=2))
        return 0 if state.error is None else 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = serve(syncer.state, args.port)
    log.info(
        "syncing s3://%s/%s/ into %s every %ss (limit %d bytes)",
        args.bucket, model_path(syncer.prefix, args.model), args.dest, args.interval, limit,
    )  # fmt: skip
    while not stop.is_set():
        syncer.sync_once()
        stop.wait(args.interval)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
