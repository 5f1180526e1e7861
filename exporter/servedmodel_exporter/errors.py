"""One exception hierarchy whose exit codes scripts (and the operator's Job) can rely on."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_VERIFICATION = 4
EXIT_VERSION_EXISTS = 5
EXIT_PUBLISH = 6


class ExporterError(Exception):
    """Base class: every expected failure maps to a documented exit code."""

    exit_code = EXIT_INTERNAL


class UsageError(ExporterError):
    """Bad arguments or user-supplied files (e.g. sample inputs that do not fit the signature)."""

    exit_code = EXIT_USAGE


class SourceError(ExporterError):
    """The source cannot be fetched, does not match its checksum, or is not a readable model."""

    exit_code = EXIT_SOURCE


class VerificationError(ExporterError):
    """The exported SavedModel failed a check; nothing was published."""

    exit_code = EXIT_VERIFICATION


class VersionExistsError(ExporterError):
    """Published versions are immutable: the requested version is already there."""

    exit_code = EXIT_VERSION_EXISTS


class PublishError(ExporterError):
    """Filesystem trouble while staging, locking, renaming or pruning."""

    exit_code = EXIT_PUBLISH
