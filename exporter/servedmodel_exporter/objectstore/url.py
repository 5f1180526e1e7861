"""``s3://bucket/prefix`` locations, with the endpoint and region from flags or the standard AWS variables.

Credentials are not handled here: boto3 reads them the usual way (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_PROFILE and ~/.aws/credentials, web identity, instance roles), so every way users already configure
AWS tools works unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError

SCHEME = "s3://"
ENDPOINT_ENV = "AWS_ENDPOINT_URL"  # the standard variable (also honoured by the AWS CLI and SDKs)
ENDPOINT_ENV_S3 = "AWS_ENDPOINT_URL_S3"  # the service-specific variant, which wins when both are set
REGION_ENVS = ("AWS_REGION", "AWS_DEFAULT_REGION")
DEFAULT_REGION = "us-east-1"  # S3's own default; S3-compatible stores accept it

# S3's bucket naming rules (https-style names: 3-63 lowercase letters, digits, dots, hyphens).
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def is_s3_url(text: str | os.PathLike | None) -> bool:
    return isinstance(text, str) and text.startswith(SCHEME)


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash; "" is the bucket's root), plus where the
    store is: ``endpoint_url`` None means AWS itself."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = DEFAULT_REGION

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` below the prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def __str__(self) -> str:
        return self.url if self.endpoint_url is None else f"{self.url} at {self.endpoint_url}"


def parse_s3_url(
    url: str,
    endpoint_url: str | None = None,
    region: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> S3Location:
    """Parse ``s3://bucket[/prefix]``; the endpoint and region come from the arguments, else from
    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and AWS_REGION / AWS_DEFAULT_REGION, else AWS's defaults."""
    env = os.environ if environ is None else environ
    if not is_s3_url(url):
        raise UsageError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise UsageError(
            f"invalid bucket name {bucket!r} in {url!r}: 3-63 lowercase letters, digits, dots or hyphens, "
            "starting and ending with a letter or digit"
        )
    prefix = prefix.strip("/")
    segments = prefix.split("/") if prefix else []
    bad = [s for s in segments if s in ("", ".", "..")]
    if bad:
        raise UsageError(f"invalid prefix {prefix!r} in {url!r}: no empty, '.' or '..' path segments")
    endpoint = endpoint_url or env.get(ENDPOINT_ENV_S3) or env.get(ENDPOINT_ENV) or None
    if endpoint is not None:
        endpoint = endpoint.rstrip("/")
        if not re.fullmatch(r"https?://[^/\s]+", endpoint):
            raise UsageError(
                f"invalid endpoint URL {endpoint!r}: expected http(s)://host[:port] (no path), "
                "e.g. http://127.0.0.1:8333"
            )
    chosen_region = region or next((env[k] for k in REGION_ENVS if env.get(k)), None) or DEFAULT_REGION
    return S3Location(bucket=bucket, prefix=prefix, endpoint_url=endpoint, region=chosen_region)
