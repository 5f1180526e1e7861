"""A boto3 S3 client for an ``S3Location``, and plain-words explanations of what S3 answered.

Path-style addressing against custom endpoints (S3-compatible stores and in-cluster Services rarely have
wildcard DNS for virtual-host buckets); short connect timeouts so an unreachable endpoint is reported in
seconds, not after minutes of retries.
"""

from __future__ import annotations

from typing import Any

from ..errors import ExporterError, PublishError, UsageError
from .url import ENDPOINT_ENV, S3Location


class ObjectStoreError(PublishError):
    """The object store refused or could not be reached; the message says which and how to fix it."""


def make_client(location: S3Location, **client_kwargs: Any):
    """A boto3 S3 client for ``location`` (credentials as boto3 finds them, unless given here)."""
    return s3_client(location.endpoint_url, location.region, **client_kwargs)


def s3_client(endpoint_url: str | None, region: str | None, **client_kwargs: Any) -> Any:
    """A boto3 S3 client for the store at ``endpoint_url`` (None or "": AWS itself) in ``region``."""
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        connect_timeout=5,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 3},
        # Only what S3 itself requires: some S3-compatible stores reject the newer default checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(  # a session of its own: the default one caches credentials
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        config=config,
        **client_kwargs,
    )


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError ("NoSuchBucket", "412", ...), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = (response.get("Error") or {}).get("Code")
    return str(code) if code is not None else None


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    return (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")


def explain(exc: BaseException, location: S3Location, action: str) -> ExporterError:
    """An exporter error that says what failed while doing ``action`` on ``location`` and how to fix it."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = str(location)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return UsageError(
            f"{action} {where}: no S3 credentials found ({exc}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / ~/.aws/credentials)"
        )
    if isinstance(exc, EndpointConnectionError):
        hint = (
            f"check --endpoint-url / {ENDPOINT_ENV}"
            if location.endpoint_url
            else f"for an S3-compatible store set --endpoint-url or {ENDPOINT_ENV}"
        )
        return ObjectStoreError(f"{action} {where}: cannot reach the S3 endpoint ({exc}); {hint}")
    if isinstance(exc, ClientError):
        code = error_code(exc) or "?"
        message = (exc.response.get("Error") or {}).get("Message") or ""
        if code in ("NoSuchBucket",) or (code == "404" and action.startswith("checking bucket")):
            return UsageError(
                f"{action} {where}: bucket {location.bucket!r} does not exist; create it first "
                f"(e.g. aws s3 mb s3://{location.bucket}) or fix the URL"
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
            return UsageError(
                f"{action} {where}: the S3 credentials were rejected ({code}: {message or 'bad key'}); "
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile in use)"
            )
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return UsageError(
                f"{action} {where}: access denied ({code}{': ' + message if message else ''}); the "
                "credentials are valid but may not read/write this bucket and prefix: grant "
                "s3:ListBucket, s3:GetObject, s3:PutObject (and s3:DeleteObject for prune/gc)"
            )
        return ObjectStoreError(f"{action} {where}: S3 answered {code}: {message or exc}")
    return ObjectStoreError(f"{action} {where}: {type(exc).__name__}: {exc}")
