"""Publishing a finished, verified version folder into a bucket with the layout's guarantees.

1. Claim the number: ``put_if_absent(<M>/.claims/<N>)``. The loser of a race gets 412 and takes the next
   number (``auto``) or fails with VersionExistsError (an explicit N). Stores that ignore If-None-Match get
   a best-effort lock object instead (see ``_ModelLock``).
2. Upload every file below ``<M>/<N>/``, hashing as it goes; then list them back and compare sizes.
3. Write the commit marker ``<M>/<N>.commit.json`` last, only if absent. Readers take nothing before it.

A failure before the marker removes what this run uploaded and its claim (the number is free again); a
killed run leaves objects and a claim that no reader serves and ``gc`` removes after a grace period. A
committed version is never removed except by retention (``prune``), marker first, so readers stop taking
it before any of its objects go.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoints import CLAIMED, UPLOADED, UPLOADING, VERSION_CHOSEN, checkpoint
from ..errors import PublishError, VersionExistsError
from . import layout
from .client import ObjectStoreError, explain, make_client
from .layout import Marker, ObjectEntry
from .url import S3Location

log = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 50  # `auto` numbers lost to concurrent publishers before giving up
LOCK_TTL = dt.timedelta(minutes=2)  # a lock object older than this is from a dead publisher
DEFAULT_GC_AGE = dt.timedelta(hours=1)  # uncommitted leftovers younger than this may be a live upload
_MULTIPART = 64 * 2**20


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def owner_id() -> str:
    """Who is publishing, for claims and markers: host, pid and a random part (pids repeat across pods)."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def local_files(folder: Path) -> list[tuple[str, Path]]:
    """(relative "/" path, file) of every regular file below ``folder``, sorted; symlinks are refused."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                raise PublishError(f"{path} is not a regular file; a version folder holds only files")
            found.append((path.relative_to(folder).as_posix(), path))
    return found


@dataclass
class Claim:
    version: int
    owner: str
    source_sha256: str
    claimed: dt.datetime = field(default_factory=_now)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": self.version,
                "owner": self.owner,
                "source_sha256": self.source_sha256,
                "claimed_utc": self.claimed.isoformat(timespec="seconds"),
            },
            sort_keys=True,
        ).encode()


class S3Publisher:
    """Versions of one model at one ``S3Location``; every S3 failure becomes an explained ExporterError."""

    def __init__(self, location: S3Location, model: str, client=None) -> None:
        self.location = location
        self.model = layout.check_model_name(model)
        self.client = client or make_client(location)
        self.bucket, self.prefix = location.bucket, location.prefix
        self.owner = owner_id()
        self._conditional: bool | None = None

    # -- reading --------------------------------------------------------------------------------------

    def _call(self, action: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (PublishError, VersionExistsError, layout.MarkerError):
            raise
        except Exception as exc:
            if type(exc).__module__.startswith(("botocore", "boto3", "urllib3")):
                raise explain(exc, self.location, action) from exc
            raise

    def check_bucket(self) -> None:
        """Fail early, and clearly, on a missing bucket, bad credentials or an unreachable endpoint."""
        self._call(
            f"checking bucket {self.bucket!r} of",
            self.client.list_objects_v2,
            Bucket=self.bucket,
            Prefix=layout.model_prefix(self.prefix, self.model),
            MaxKeys=1,
        )

    def listing(self) -> layout.ModelListing:
        return self._call("listing", layout.model_listing, self.client, self.bucket, self.prefix, self.model)

    def marker(self, version: int) -> Marker | None:
        return self._call(
            f"reading the commit marker of version {version} in",
            layout.read_marker,
            self.client,
            self.bucket,
            self.prefix,
            self.model,
            version,
        )

    def url_of(self, version: int) -> str:
        return f"s3://{self.bucket}/{layout.version_prefix(self.prefix, self.model, version)}"

    def published_from(self, sha256: str, version: int | None = None) -> tuple[int, Marker] | None:
        """The highest complete version (or just ``version``) whose manifest names this source sha256."""
        complete = self.listing().complete
        candidates = [version] if version is not None else sorted(complete, reverse=True)
        for number in candidates:
            if number not in complete:
                continue
            marker = self.marker(number)
            recorded = ((marker.manifest or {}).get("source") or {}).get("sha256") if marker else None
            if marker is not None and recorded == sha256:
                return number, marker
        return None

    def conditional_writes(self) -> bool:
        if self._conditional is None:
            self._conditional = self._call(
                "probing conditional writes (If-None-Match) on",
                layout.conditional_writes_supported,
                self.client,
                self.bucket,
                self.prefix,
            )
            if not self._conditional:
                log.warning(
                    "%s does not honour If-None-Match: version numbers are claimed under a lock object "
                    "(%s) instead, which is best effort",
                    self.location,
                    layout.lock_key(self.prefix, self.model),
                )
        return self._conditional

    # -- claiming ------------------------------------------------------------------------------------

    def _read_claim(self, version: int) -> dict:
        try:
            body = self.client.get_object(
                Bucket=self.bucket, Key=layout.claim_key(self.prefix, self.model, version)
            )["Body"].read()
            return json.loads(body)
        except Exception:  # noqa: BLE001 - a claim we cannot read is still a claim
            return {}

    def _try_claim(self, claim: Claim) -> bool:
        key = layout.claim_key(self.prefix, self.model, claim.version)
        if self.conditional_writes():
            return self._call(
                f"claiming version {claim.version} in",
                layout.put_if_absent,
                self.client,
                self.bucket,
                key,
                claim.to_json(),
            )
        with _ModelLock(self):
            if claim.version in self.listing().taken:
                return False
            self._call(
                f"claiming version {claim.version} in",
                self.client.put_object,
                Bucket=self.bucket,
                Key=key,
                Body=claim.to_json(),
                ContentType="application/json",
            )
            # A second line of defence for this best-effort path: should another publisher have held the
            # lock too, the last claim written wins, and each reads back whose it is.
            time.sleep(_ModelLock.SETTLE_SECONDS)
            return self._read_claim(claim.version).get("owner") == claim.owner

    def claim(self, version: int | None, source_sha256: str) -> Claim:
        """Take ``version`` (None: one more than every number in use); 412 means another publisher has it."""
        if version is not None:
            claim = Claim(version, self.owner, source_sha256)
            checkpoint(VERSION_CHOSEN)
            if not self._try_claim(claim):
                held = self._read_claim(version)
                raise VersionExistsError(
                    f"version {version} of {self.model} already exists or is being published in "
                    f"{self.location} (claimed {held.get('claimed_utc', '?')} by {held.get('owner', '?')}); "
                    "published versions are immutable: use --version auto or a higher number"
                )
            checkpoint(CLAIMED)
            return claim
        for _ in range(CLAIM_ATTEMPTS):
            candidate = max(self.listing().taken, default=0) + 1
            claim = Claim(candidate, self.owner, source_sha256)
            checkpoint(VERSION_CHOSEN)
            if self._try_claim(claim):
                checkpoint(CLAIMED)
                return claim
            log.info("version %d was just taken by another publisher: trying the next", candidate)
        raise PublishError(f"could not claim a version number of {self.model} in {CLAIM_ATTEMPTS} attempts")

    def claimed_by(self, version: int) -> dict:
        """What the claim of ``version`` says (owner, source_sha256, claimed_utc); {} if unreadable."""
        return self._read_claim(version)

    def wait_for_commit(self, version: int, source_sha256: str, timeout: float) -> Marker | None:
        """Another publisher of this same source holds ``version``: wait for its marker (None: timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.published_from(source_sha256, version)
            if found is not None:
                return found[1]
            time.sleep(1)
        return None

    # -- uploading and committing ----------------------------------------------------------------------

    def upload(self, claim: Claim, folder: Path) -> list[ObjectEntry]:
        """Upload every file of ``folder`` below the claimed version's prefix, with progress lines."""
        from boto3.s3.transfer import TransferConfig

        files = local_files(folder)
        total = sum(path.stat().st_size for _, path in files)
        config = TransferConfig(multipart_threshold=_MULTIPART, multipart_chunksize=_MULTIPART)
        entries, sent, started = [], 0, time.monotonic()
        log.info("uploading %d files (%s) to %s", len(files), _size(total), self.url_of(claim.version))
        for index, (relative, path) in enumerate(files, 1):
            size = path.stat().st_size
            key = layout.object_key(self.prefix, self.model, claim.version, relative)
            self._call(
                f"uploading {relative} to",
                self.client.upload_file,
                str(path),
                self.bucket,
                key,
                Config=config,
            )
            entries.append(ObjectEntry(relative, size, _sha256(path)))
            sent += size
            log.info(
                "  [%d/%d] %s (%s; %s of %s)",
                index,
                len(files),
                relative,
                _size(size),
                _size(sent),
                _size(total),
            )
            if index == 1:
                checkpoint(UPLOADING)
        self._check_uploaded(claim.version, entries)
        log.info("uploaded %s in %.1fs", _size(total), time.monotonic() - started)
        checkpoint(UPLOADED)
        return entries

    def _check_uploaded(self, version: int, entries: list[ObjectEntry]) -> None:
        """List the version back: every object there with its size, nothing else (a stray means trouble)."""
        root = layout.version_prefix(self.prefix, self.model, version)
        found = {}
        for page in self._call("listing", layout._list, self.client, self.bucket, root, None):
            for obj in page.get("Contents", []):
                found[obj["Key"][len(root) :]] = obj["Size"]
        expected = {e.path: e.size for e in entries}
        if found != expected:
            wrong = sorted(set(found.items()) ^ set(expected.items()))
            raise PublishError(
                f"the uploaded objects of version {version} do not match the files: {wrong[:5]}"
            )

    def commit(self, claim: Claim, entries: list[ObjectEntry], manifest: dict | None) -> Marker:
        """Write the commit marker, only if absent: from now on the version is complete."""
        marker = Marker(self.model, claim.version, tuple(entries), manifest, publisher=self.owner)
        key = layout.marker_key(self.prefix, self.model, claim.version)
        created = self._call(
            f"writing the commit marker of version {claim.version} to",
            layout.put_if_absent,
            self.client,
            self.bucket,
            key,
            marker.to_json(),
        )
        if not created:
            raise VersionExistsError(
                f"a commit marker for version {claim.version} appeared while publishing (a publisher that "
                "ignored the claim?); nothing was overwritten"
            )
        return marker

    def abandon(self, claim: Claim) -> None:
        """Best effort after a failure before the marker: remove this run's objects, then its claim."""
        try:
            if self.marker(claim.version) is not None:
                return  # committed after all: never remove a complete version here
            self._delete_prefix(layout.version_prefix(self.prefix, self.model, claim.version))
            self.client.delete_object(
                Bucket=self.bucket, Key=layout.claim_key(self.prefix, self.model, claim.version)
            )
            log.info("removed the partial upload of version %d and its claim", claim.version)
        except Exception as exc:  # noqa: BLE001 - the original failure matters more; gc cleans the rest
            log.warning(
                "could not remove the partial upload of version %d (%s); `gc` will", claim.version, exc
            )

    def _delete_prefix(self, root: str) -> int:
        keys = []
        for page in layout._list(self.client, self.bucket, root, None):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            # One by one where DeleteObjects is missing or refused; usually one batch call.
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except Exception:  # noqa: BLE001
                for item in batch:
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
        return len(keys)

    # -- retention and garbage --------------------------------------------------------------------------

    def prune(self, keep: int, pins: Iterable[int], protect: int) -> list[int]:
        """Keep the ``keep`` highest complete versions plus pinned ones and ``protect``. Each victim loses
        its marker first, so no reader starts taking it while its objects go."""
        spared = set(pins) | {protect}
        ranked = sorted(self.listing().complete, reverse=True)
        victims = [v for v in ranked[keep:] if v not in spared]
        for version in victims:
            self._call(f"removing old version {version} from", self._remove_version, version, True)
            log.info("retention: removed version %d", version)
        return sorted(victims)

    def _remove_version(self, version: int, committed: bool) -> None:
        if committed:
            self.client.delete_object(
                Bucket=self.bucket, Key=layout.marker_key(self.prefix, self.model, version)
            )
        self._delete_prefix(layout.version_prefix(self.prefix, self.model, version))
        self.client.delete_object(Bucket=self.bucket, Key=layout.claim_key(self.prefix, self.model, version))

    def gc(self, older_than: dt.timedelta = DEFAULT_GC_AGE, dry_run: bool = False) -> list[int]:
        """Remove uncommitted versions (objects and/or a claim, no marker) untouched for ``older_than``:
        what killed uploads left. Committed versions are never touched."""
        listing = self.listing()
        cutoff = _now() - older_than
        removed = []
        for version in sorted((set(listing.uncommitted) | set(listing.claims)) - set(listing.complete)):
            newest = self._newest_write(version, listing.claims.get(version))
            if newest is not None and newest > cutoff:
                log.info(
                    "version %d is uncommitted but written %s: maybe a live upload; kept",
                    version,
                    newest.isoformat(timespec="seconds"),
                )
                continue
            if not dry_run:
                if self.marker(version) is not None:
                    continue  # committed meanwhile
                self._call(
                    f"removing uncommitted version {version} from", self._remove_version, version, False
                )
            log.info("%s uncommitted version %d", "would remove" if dry_run else "removed", version)
            removed.append(version)
        if not dry_run and self._call(
            "removing an expired lock object from", _ModelLock(self).remove_if_expired
        ):
            log.info("removed the expired lock object %s", layout.lock_key(self.prefix, self.model))
        return removed

    def last_write(self, version: int) -> dt.datetime | None:
        """When anything of ``version`` (its claim or an object) was last written; None: nothing there."""
        return self._newest_write(version, self.listing().claims.get(version))

    def remove_uncommitted(self, version: int) -> bool:
        """Remove the objects and claim of ``version`` unless it is committed; True if removed."""
        if self.marker(version) is not None:
            return False
        self._call(f"removing uncommitted version {version} from", self._remove_version, version, False)
        return True

    def _newest_write(self, version: int, claimed: dt.datetime | None) -> dt.datetime | None:
        times = [claimed] if claimed else []
        root = layout.version_prefix(self.prefix, self.model, version)
        for page in self._call("listing", layout._list, self.client, self.bucket, root, None):
            times.extend(obj["LastModified"] for obj in page.get("Contents", []))
        return max(times, default=None)


class _ModelLock:
    """For stores without If-None-Match: a lock object with owner and expiry, written, then read back
    after a pause to see whose write won. Best effort (S3 has no compare-and-swap without conditional
    writes), which is why the probe prefers claims by conditional create."""

    SETTLE_SECONDS = 0.5

    def __init__(self, publisher: S3Publisher) -> None:
        self.p = publisher
        self.key = layout.lock_key(publisher.prefix, publisher.model)

    def _holder(self) -> dict | None:
        try:
            body = self.p.client.get_object(Bucket=self.p.bucket, Key=self.key)["Body"].read()
            return json.loads(body)
        except Exception:  # noqa: BLE001 - absent or unreadable: free
            return None

    @staticmethod
    def expired(holder: object) -> bool:
        """A lock object past its expiry, or not one we can read (then nobody can renew it either)."""
        try:
            return dt.datetime.fromisoformat(holder["expires_utc"]) < _now()  # type: ignore[index]
        except (KeyError, TypeError, ValueError):
            return True

    def remove_if_expired(self) -> bool:
        holder = self._holder()
        if holder is None or not self.expired(holder):
            return False
        self.p.client.delete_object(Bucket=self.p.bucket, Key=self.key)
        return True

    def __enter__(self) -> _ModelLock:
        deadline = time.monotonic() + LOCK_TTL.total_seconds() * 2
        while time.monotonic() < deadline:
            holder = self._holder()
            if holder is None or self.expired(holder):
                body = {
                    "owner": self.p.owner,
                    "expires_utc": (_now() + LOCK_TTL).isoformat(timespec="seconds"),
                }
                self.p.client.put_object(Bucket=self.p.bucket, Key=self.key, Body=json.dumps(body).encode())
                time.sleep(self.SETTLE_SECONDS)
                if (self._holder() or {}).get("owner") == self.p.owner:
                    return self
            time.sleep(0.5)
        raise ObjectStoreError(f"could not take the lock object {self.key} in {self.p.location}")

    def __exit__(self, *exc: object) -> None:
        if (self._holder() or {}).get("owner") == self.p.owner:
            self.p.client.delete_object(Bucket=self.p.bucket, Key=self.key)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
