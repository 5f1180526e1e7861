"""One exception hierarchy whose exit codes scripts (and the operator's Job) can rely on."""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_VERIFICATION = 4
EXIT_VERSION_EXISTS = 5
EXIT_PUBLISH = 6
EXIT_NO_SPACE = 7
EXIT_SOURCE_UNAVAILABLE = 8

# What a retry of the same command can change: nothing for these (the operator's Job fails at once).
PERMANENT_EXIT_CODES = (EXIT_USAGE, EXIT_SOURCE, EXIT_VERIFICATION, EXIT_VERSION_EXISTS, EXIT_NO_SPACE)


class ExporterError(Exception):
    """Base class: every expected failure maps to a documented exit code."""

    exit_code = EXIT_INTERNAL


class UsageError(ExporterError):
    """Bad arguments or user-supplied files (e.g. sample inputs that do not fit the signature)."""

    exit_code = EXIT_USAGE


class SourceError(ExporterError):
    """The source cannot be fetched, does not match its checksum, or is not a readable model."""

    exit_code = EXIT_SOURCE


class SourceUnavailableError(SourceError):
    """The source could not be downloaded for a reason that may pass (connection, timeout, HTTP 5xx/429)."""

    exit_code = EXIT_SOURCE_UNAVAILABLE


class VerificationError(ExporterError):
    """The exported SavedModel failed a check; nothing was published."""

    exit_code = EXIT_VERIFICATION


class VersionExistsError(ExporterError):
    """Published versions are immutable: the requested version is already there."""

    exit_code = EXIT_VERSION_EXISTS


class PublishError(ExporterError):
    """Filesystem trouble while staging, locking, renaming or pruning."""

    exit_code = EXIT_PUBLISH


class NoSpaceError(PublishError):
    """A disk filled up (ENOSPC or its quota twin EDQUOT); nothing was published and the staging is gone."""

    exit_code = EXIT_NO_SPACE


_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


def is_no_space(exc: BaseException | None) -> bool:
    """Whether `exc` or anything in its cause chain is a full disk (TensorFlow reports it only as text)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, NoSpaceError) or getattr(exc, "errno", None) in _NO_SPACE_ERRNOS:
            return True
        if any(text in str(exc) for text in _NO_SPACE_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
