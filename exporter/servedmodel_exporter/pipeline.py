"""The publish use case: fetch, export into staging, verify, add extras, fsync, rename, prune.

Every check runs on the staged copy before the rename, so a failure at any step leaves published versions
untouched and at most a staging folder that this or the next run removes.

Publishing is idempotent by the source's sha256 (recorded in each version's manifest): a source that is
already published is reported as that version, so a retried Job (after a crash past the rename, or a
retention failure) never publishes a second copy, nor fails on the explicit version it published itself.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import manifest, models, signatures, warmup
from .checkpoints import EXPORTED, STAGING_CREATED, SYNCED, VERIFIED, VERSION_CHOSEN, checkpoint
from .errors import NoSpaceError, PublishError, UsageError, VersionExistsError, is_no_space
from .publish import ModelDir, Staging, fsync_tree, make_readable
from .sources import SAVED_MODEL, Source, resolve
from .verify import Report, verify

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
COMMIT_ATTEMPTS = 20  # `auto` renames lost to exporters whose lock is not ours (NFS with local locks)


@dataclass(frozen=True)
class PublishRequest:
    source: str
    base_path: Path
    model: str
    version: int | None = None  # None: one more than the highest published version
    sha256: str | None = None
    signature: str = DEFAULT_SIGNATURE
    sample_inputs: Path | None = None
    atol: float = 1e-5
    rtol: float = 1e-5
    warmup_records: int = 0
    keep: int | None = None
    pins: tuple[int, ...] = ()


@dataclass(frozen=True)
class PublishResult:
    model: str
    version: int
    path: str
    source: dict[str, str]
    signatures: list[str]
    max_abs_diff: dict[str, float]
    warmup_records: int
    removed_versions: list[int] = field(default_factory=list)
    cleaned_leftovers: list[str] = field(default_factory=list)
    already_published: bool = False  # the same source was published before, as `version`: nothing new
    tensorflow_version: str = ""  # what wrote the version: an older server may fail to load it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def publish(request: PublishRequest) -> PublishResult:
    _validate(request)
    model_dir = ModelDir(request.base_path, request.model)
    with _disk("the model volume", model_dir.root):
        model_dir.ensure()
        if request.version is not None and request.version in model_dir.versions():
            # Fail (or succeed) before the expensive part; decided again under the lock.
            recorded = model_dir.source_sha256(request.version)
            expected = request.sha256.strip().lower() if request.sha256 else None
            if recorded is None or (expected and expected != recorded):
                model_dir.check_free(request.version)  # taken by another source: fail before downloading
            if expected and expected == recorded:
                return _already_published(request, model_dir, request.version, None)
    with tempfile.TemporaryDirectory(prefix="servedmodel-export-") as work:
        with _step("fetching source"), _disk("the temporary folder", Path(work)):
            source = resolve(request.source, Path(work), request.sha256)
        with _disk("the model volume", model_dir.root):
            done = model_dir.published_from(source.sha256, request.version)
            if done is not None:
                return _already_published(request, model_dir, done, source)
            if request.version is not None:
                model_dir.check_free(request.version)
        with _step(f"loading {source.kind} source"), _disk("the temporary folder", Path(work)):
            source_model, reference = _load_source(source, request.signature)
        with _disk("the model volume", model_dir.root):
            with model_dir.lock():
                cleaned = model_dir.clean_leftovers()
                staging = model_dir.new_staging()
            try:
                return _publish_staged(request, model_dir, staging, source, source_model, reference, cleaned)
            finally:
                staging.discard()  # a no-op for the folder once it has been renamed


def _already_published(
    request: PublishRequest, model_dir: ModelDir, version: int, source: Source | None, locked: bool = False
) -> PublishResult:
    """The source is published as `version` already: report it, and do the retention a crash skipped."""
    path = model_dir.root / str(version)
    found = manifest.read(path) or {}
    log.info(
        "%s version %d was already published from this source; nothing to publish", request.model, version
    )
    cleaned: list[str] = []
    if locked:
        removed = _prune(model_dir, request, version)
    else:
        with model_dir.lock():
            cleaned = model_dir.clean_leftovers()  # what the crashed run that published it left
            removed = _prune(model_dir, request, version)
    return _recorded_result(request, version, str(path), source, found, removed, cleaned)


def _publish_staged(
    request: PublishRequest,
    model_dir: ModelDir,
    staging: Staging,
    source: Source,
    source_model: object,
    reference: models.Predict,
    cleaned: list[str],
) -> PublishResult:
    checkpoint(STAGING_CREATED)
    described, report = _export_verified(request, source, source_model, reference, staging.path, "staged")
    checkpoint(VERIFIED)
    with _step("syncing to disk"):
        make_readable(staging.path)
        fsync_tree(staging.path)
    checkpoint(SYNCED)
    with model_dir.lock():
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            done = model_dir.published_from(source.sha256, request.version)
            if done is not None:  # a retry of this very export, or a twin, got there first
                return _already_published(request, model_dir, done, source, locked=True)
            published = model_dir.versions()
            version = request.version if request.version is not None else max(published, default=0) + 1
            model_dir.check_free(version)
            checkpoint(VERSION_CHOSEN)
            try:
                path = model_dir.commit(staging, version)
                break
            except VersionExistsError:
                if request.version is not None or attempt == COMMIT_ATTEMPTS:
                    raise
                log.warning(
                    "version %d appeared meanwhile (an exporter outside our lock): trying the next", version
                )
        log.info("published %s version %d at %s", request.model, version, path)
        removed = _prune(model_dir, request, version)
    return _new_result(request, version, str(path), source, described, report, removed, cleaned)


def _new_result(
    request: PublishRequest,
    version: int,
    path: str,
    source: Source,
    described: dict[str, Any],
    report: Report,
    removed: list[int],
    cleaned: list[str] | None = None,
) -> PublishResult:
    """The result of publishing `source` as the new `version` at `path` (a folder or an s3:// URL)."""
    return PublishResult(
        model=request.model,
        version=version,
        path=path,
        source=_source_record(source),
        signatures=sorted(described),
        max_abs_diff=report.max_abs_diff,
        warmup_records=request.warmup_records,
        removed_versions=removed,
        cleaned_leftovers=cleaned or [],
        tensorflow_version=models.tensorflow_version(),
    )


def _recorded_result(
    request: PublishRequest,
    version: int,
    path: str,
    source: Source | None,
    found: dict[str, Any],
    removed: list[int],
    cleaned: list[str] | None = None,
) -> PublishResult:
    """The result for a `version` already published from this source, from its manifest `found` (the
    source as recorded there when this run did not fetch it)."""
    return PublishResult(
        model=request.model,
        version=version,
        path=path,
        source=_source_record(source) if source else found.get("source") or {},
        signatures=sorted(found.get("signatures") or {}),
        max_abs_diff=(found.get("verification") or {}).get("max_abs_diff") or {},
        warmup_records=found.get("warmup_records", 0),
        removed_versions=removed,
        cleaned_leftovers=cleaned or [],
        already_published=True,
        tensorflow_version=found.get("tensorflow_version", ""),
    )


def _source_record(source: Source) -> dict[str, str]:
    return {"uri": source.uri, "kind": source.kind, "sha256": source.sha256}


def _validate(request: PublishRequest) -> None:
    if request.version is not None and request.version < 0:
        raise UsageError(f"--version must be 'auto' or a non-negative integer, got {request.version}")
    if request.keep is not None and request.keep < 1:
        raise UsageError(f"--keep must be at least 1, got {request.keep}")
    if request.pins and request.keep is None:
        raise UsageError("--pin only makes sense with --keep")
    if request.atol < 0 or request.rtol < 0:
        raise UsageError("--atol and --rtol must not be negative")
    if not 0 <= request.warmup_records <= warmup.MAX_RECORDS:
        raise UsageError(f"--warmup must be between 0 and {warmup.MAX_RECORDS} (TF Serving's limit)")
    if request.sample_inputs is not None and not request.sample_inputs.is_file():
        raise UsageError(f"--sample-inputs file not found: {request.sample_inputs}")


def _load_source(source: Source, signature: str) -> tuple[object, models.Predict]:
    """The loaded source (Keras model or SavedModel, kept alive by the caller) and the parity reference."""
    if source.kind == SAVED_MODEL:
        loaded, function = models.load_source_signature(source, signature)
        return loaded, models.signature_predict(function)
    model = models.load_keras(source)
    return model, models.keras_predict(model)


def _export_verified(
    request: PublishRequest,
    source: Source,
    source_model: object,
    reference: models.Predict,
    folder: Path,
    what: str,
) -> tuple[dict[str, Any], Report]:
    """Write the SavedModel into `folder` (a volume's staging folder, or a local one to upload), check it
    against the source, and add signatures, warmup requests and manifest: (signatures, parity report)."""
    with _step(f"writing SavedModel to {folder}"):
        _write_saved_model(source, source_model, folder)
    checkpoint(EXPORTED)
    with _step(f"verifying the {what} SavedModel"):
        # staged_model must stay referenced while its function runs
        staged_model, function = models.load_signature(folder, request.signature)
        report = verify(
            function, reference, request.signature, request.atol, request.rtol, request.sample_inputs
        )
    described = signatures.describe(folder)
    with _step("writing signatures, warmup requests and manifest"):
        _write_extras(
            folder,
            source,
            described,
            report,
            request.warmup_records,
            models.signature_predict(function),
        )
    return described, report


def _write_saved_model(source: Source, source_model: object, destination: Path) -> None:
    if source.kind == SAVED_MODEL:
        models.copy_saved_model(source, destination)
    else:
        models.export_keras(source_model, destination)


def _write_extras(
    version_dir: Path,
    source: Source,
    described: dict[str, Any],
    report: Report,
    warmup_records: int,
    staged_predict: models.Predict,
) -> None:
    assets_extra = version_dir / manifest.ASSETS_EXTRA
    try:
        assets_extra.mkdir(exist_ok=True)
        (assets_extra / manifest.SIGNATURES_FILE).write_text(signatures.render(described))
        if warmup_records:
            path = warmup.write(assets_extra, report.samples, report.signature, warmup_records)
            warmup.replay(path, staged_predict, report.signature, warmup_records)
        manifest.write(assets_extra, manifest.build(source, described, report, warmup_records))
    except OSError as exc:
        raise PublishError(f"cannot write {assets_extra}: {exc.strerror or exc}") from exc


class _Versions(Protocol):
    """Where versions are published (a ModelDir on a volume, an S3Publisher): what retention needs."""

    def prune(self, keep: int, pins: Iterable[int], protect: int) -> list[int]: ...


def _prune(versions: _Versions, request: PublishRequest, version: int) -> list[int]:
    if request.keep is None:
        return []
    try:
        return versions.prune(request.keep, request.pins, protect=version)
    except PublishError as exc:
        raise PublishError(f"version {version} was published, but retention failed: {exc}") from exc


@contextmanager
def _disk(where: str, path: Path) -> Iterator[None]:
    """A full disk, however it surfaced (OSError, a TensorFlow error's text), becomes NoSpaceError."""
    try:
        yield
    except NoSpaceError:
        raise
    except Exception as exc:
        if not is_no_space(exc):
            raise
        raise NoSpaceError(
            f"no space left on {where} ({path}): {exc}; nothing was published and the partial copy was "
            "removed. Free space (or give it more) and run the export again."
        ) from exc


@contextmanager
def _step(what: str) -> Iterator[None]:
    log.info("%s ...", what)
    started = time.monotonic()
    yield
    log.info("%s: done in %.1fs", what, time.monotonic() - started)
