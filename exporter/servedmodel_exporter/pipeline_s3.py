"""The publish use case into S3-compatible object storage: fetch, export and verify in a local folder (as
for a volume), then claim a version number, upload, and write the commit marker last (objectstore.publisher).

Idempotent by the source's sha256 as on a volume: a source whose version is already complete is reported
as that version ("already_published"), so a retried export Job never publishes a second copy.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path

from . import manifest
from .checkpoints import VERIFIED, checkpoint
from .errors import PublishError, VersionExistsError
from .objectstore.layout import Marker
from .objectstore.publisher import DEFAULT_GC_AGE, S3Publisher
from .objectstore.url import S3Location
from .pipeline import (
    PublishRequest,
    PublishResult,
    _disk,
    _export_verified,
    _load_source,
    _new_result,
    _prune,
    _recorded_result,
    _step,
    _validate,
)
from .sources import Source, resolve

log = logging.getLogger(__name__)

TWIN_WAIT_SECONDS = 300  # how long to wait for a concurrent publish of the same source to commit
# An uncommitted version of the same source untouched this long is a dead publisher's (as for `gc`): a
# retried Job with an explicit version takes it over instead of waiting for it.
TWIN_STALE_AFTER = DEFAULT_GC_AGE


def publish_s3(request: PublishRequest, location: S3Location) -> PublishResult:
    _validate(request)
    publisher = S3Publisher(location, request.model)
    with _step(f"checking {location}"):
        publisher.check_bucket()
        publisher.conditional_writes()  # also proves the right to write, before the expensive part
    expected = request.sha256.strip().lower() if request.sha256 else None
    if request.version is not None:
        # Fail (or succeed) before the expensive part; the claim decides again.
        listing = publisher.listing()
        if request.version in listing.complete:
            recorded = _source_sha256(publisher.marker(request.version))
            if expected and expected == recorded:
                return _already_published(request, publisher, request.version, None)
            if recorded is None or (expected and expected != recorded):
                _refuse_taken(request, location)
        elif request.version in listing.taken and expected:
            if publisher.claimed_by(request.version).get("source_sha256") != expected:
                _refuse_taken(request, location, in_progress=True)
    with tempfile.TemporaryDirectory(prefix="servedmodel-export-") as work:
        with _step("fetching source"), _disk("the temporary folder", Path(work)):
            source = resolve(request.source, Path(work), request.sha256)
        done = publisher.published_from(source.sha256, request.version)
        if done is not None:
            return _already_published(request, publisher, done[0], source)
        if request.version is not None:
            listing = publisher.listing()
            if request.version in listing.complete:
                _refuse_taken(request, location)
            if request.version in listing.taken:
                if publisher.claimed_by(request.version).get("source_sha256") != source.sha256:
                    _refuse_taken(request, location, in_progress=True)
                twin = _await_twin(request, publisher, source)
                if twin is not None:
                    return twin
        with _step(f"loading {source.kind} source"), _disk("the temporary folder", Path(work)):
            source_model, reference = _load_source(source, request.signature)
        staging = Path(work) / "version"
        with _disk("the temporary folder", Path(work)):
            staging.mkdir()
            described, report = _export_verified(
                request, source, source_model, reference, staging, "exported"
            )
        checkpoint(VERIFIED)
        try:
            claim = publisher.claim(request.version, source.sha256)
        except VersionExistsError:
            if publisher.claimed_by(request.version).get("source_sha256") != source.sha256:
                raise
            twin = _await_twin(request, publisher, source)
            if twin is not None:
                return twin
            claim = publisher.claim(request.version, source.sha256)
        log.info("claimed version %d of %s", claim.version, request.model)
        try:
            entries = publisher.upload(claim, staging)
            twin = publisher.published_from(source.sha256)
            if twin is not None and twin[0] != claim.version and request.version is None:
                # A concurrent publish of this same source committed first: report it, keep one copy.
                publisher.abandon(claim)
                return _already_published(request, publisher, twin[0], source)
            publisher.commit(claim, entries, manifest.read(staging))
        except BaseException:
            publisher.abandon(claim)
            raise
        log.info(
            "published %s version %d at %s", request.model, claim.version, publisher.url_of(claim.version)
        )
        removed = _prune(publisher, request, claim.version)
    url = publisher.url_of(claim.version)
    return _new_result(request, claim.version, url, source, described, report, removed)


def _await_twin(request: PublishRequest, publisher: S3Publisher, source: Source) -> PublishResult | None:
    """A twin of this very publish (the same source: a Job's earlier pod, a concurrent retry) holds the
    explicit version. Untouched for TWIN_STALE_AFTER, it is a dead publisher's: its leftovers are removed
    and None says "claim it yourself". Otherwise its result is ours once it commits."""
    version = request.version
    assert version is not None
    last = publisher.last_write(version)
    if last is not None and last < dt.datetime.now(dt.timezone.utc) - TWIN_STALE_AFTER:
        log.warning(
            "version %d was claimed by a publish of this same source that stopped (last write %s): "
            "removing what it left and publishing it again",
            version,
            last.isoformat(timespec="seconds"),
        )
        if publisher.remove_uncommitted(version):
            return None
    log.info("version %d is being published from this same source: waiting for it", version)
    if publisher.wait_for_commit(version, source.sha256, TWIN_WAIT_SECONDS) is None:
        # Retryable (exit 6): the other publish may still finish, or turn stale and be taken over.
        raise PublishError(
            f"version {version} of {request.model} is claimed by a publish of this same source that did "
            f"not finish within {TWIN_WAIT_SECONDS} s; retry later (an upload untouched for "
            f"{int(TWIN_STALE_AFTER.total_seconds())} s is taken over), or remove it with "
            f"'servedmodel-export gc --older-than 0' if you know it is dead"
        )
    return _already_published(request, publisher, version, source)


def _source_sha256(marker: Marker | None) -> str | None:
    return (((marker.manifest if marker else None) or {}).get("source") or {}).get("sha256")


def _refuse_taken(request: PublishRequest, location: S3Location, in_progress: bool = False) -> None:
    state = "is being published (or an interrupted upload holds it)" if in_progress else "already exists"
    hint = " (`servedmodel-export gc` removes interrupted uploads)" if in_progress else ""
    raise VersionExistsError(
        f"version {request.version} of {request.model} {state} in {location} with another source; "
        f"published versions are immutable: use --version auto or a higher number{hint}"
    )


def _already_published(
    request: PublishRequest, publisher: S3Publisher, version: int, source: Source | None
) -> PublishResult:
    log.info(
        "%s version %d was already published from this source; nothing to publish", request.model, version
    )
    found = (publisher.marker(version) or Marker(request.model, version, ())).manifest or {}
    removed = _prune(publisher, request, version)
    return _recorded_result(request, version, publisher.url_of(version), source, found, removed)
