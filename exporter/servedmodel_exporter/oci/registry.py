"""Push an image from an OCI layout folder to a registry with the OCI distribution API (``requests`` only).

Blobs the registry already has are skipped (HEAD), the others are uploaded in one PUT each (streamed from
disk), the manifest last, so a tag never names an incomplete image. HTTPS always, except for registries on
a loopback address, where plain HTTP is what local registries speak. Credentials come from the Docker
config file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``, its ``auths``); the registry's
401 challenge says whether to send them as Basic auth or trade them for a Bearer token.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from ..errors import PublishError, UsageError
from .layout import Descriptor, Image
from .reference import DOCKER_HUB, Reference

log = logging.getLogger(__name__)

TIMEOUT = (10, 300)  # connect, read: a large layer on a slow registry takes a while to acknowledge


class PushError(PublishError):
    """The registry refused or failed a request; the message has its status and error text."""


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def credentials(registry: str, config_path: Path | None = None) -> tuple[str, str] | None:
    """(user, password) for ``registry`` from the Docker config's ``auths``, or None."""
    path = config_path or docker_config_path()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the Docker config {path}: {exc}") from exc
    auths = config.get("auths") or {}
    keys = [
        registry,
        f"https://{registry}",
        f"http://{registry}",
        f"https://{registry}/v1/",
        f"https://{registry}/v2/",
    ]
    if registry == DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io"]
    for key in keys:
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


class Registry:
    """One repository on one registry, with the session and the authorization it negotiated."""

    def __init__(
        self, ref: Reference, session: requests.Session | None = None, config_path: Path | None = None
    ):
        self.ref = ref
        self.scheme = "http" if ref.loopback else "https"
        self.base = f"{self.scheme}://{ref.api_host}/v2/{ref.repository}"
        self.session = session or requests.Session()
        self.creds = credentials(ref.registry, config_path)
        self.auth_header: str | None = None

    def _request(
        self, method: str, url: str, headers: dict[str, str] | None = None, data: Any = None
    ) -> requests.Response:
        """One request; on a 401 answer the challenge once and send it again."""
        for attempt in (1, 2):
            sent = dict(headers or {})
            if self.auth_header:
                sent["Authorization"] = self.auth_header
            if attempt == 2 and hasattr(data, "seek"):
                data.seek(0)
            try:
                resp = self.session.request(method, url, headers=sent, data=data, timeout=TIMEOUT)
            except requests.RequestException as exc:
                raise PushError(
                    f"cannot reach the registry {self.ref.registry} ({method} {url}): {exc}"
                ) from exc
            if resp.status_code != 401 or attempt == 2 or not self._authorize(resp):
                return resp
        raise AssertionError("unreachable")

    def _authorize(self, resp: requests.Response) -> bool:
        """Answer a 401 challenge; False when there is nothing more to try."""
        scheme, params = _challenge(resp.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if not self.creds:
                return False
            token = base64.b64encode(":".join(self.creds).encode()).decode()
            self.auth_header = f"Basic {token}"
            return True
        if scheme == "bearer" and params.get("realm"):
            query = {
                "service": params.get("service", ""),
                "scope": f"repository:{self.ref.repository}:pull,push",
            }
            try:
                answer = self.session.get(params["realm"], params=query, auth=self.creds, timeout=TIMEOUT)
            except requests.RequestException as exc:
                raise PushError(
                    f"cannot reach the registry's token service {params['realm']}: {exc}"
                ) from exc
            if answer.status_code != 200:
                who = "our credentials" if self.creds else "an anonymous push"
                raise PushError(
                    f"the token service refused {who} ({answer.status_code}){self._no_creds_hint()}"
                )
            body = answer.json()
            self.auth_header = f"Bearer {body.get('token') or body.get('access_token')}"
            return True
        return False

    def _no_creds_hint(self) -> str:
        if self.creds:
            return ""
        return (
            f"; no credentials for {self.ref.registry} in {docker_config_path()} (docker login writes them)"
        )

    def _check(self, resp: requests.Response, what: str, ok: tuple[int, ...]) -> requests.Response:
        if resp.status_code in ok:
            return resp
        detail = resp.text[:500].strip()
        hint = self._no_creds_hint() if resp.status_code in (401, 403) else ""
        raise PushError(f"{what} on {self.ref.name} failed: HTTP {resp.status_code} {detail}{hint}")

    def has_blob(self, digest: str) -> bool:
        resp = self._request("HEAD", f"{self.base}/blobs/{digest}")
        if resp.status_code == 404:
            return False
        self._check(resp, f"checking blob {digest}", (200,))
        return True

    def put_blob(self, descriptor: Descriptor, path: Path) -> None:
        resp = self._check(self._request("POST", f"{self.base}/blobs/uploads/"), "starting an upload", (202,))
        location = urljoin(f"{self.scheme}://{self.ref.api_host}/", resp.headers["Location"])
        location += ("&" if "?" in location else "?") + f"digest={descriptor.digest}"
        with open(path, "rb") as body:
            resp = self._request(
                "PUT",
                location,
                data=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(descriptor.size)},
            )
        self._check(resp, f"uploading blob {descriptor.digest}", (201,))

    def put_manifest(self, descriptor: Descriptor, data: bytes, tag: str) -> str:
        resp = self._request(
            "PUT", f"{self.base}/manifests/{tag}", data=data, headers={"Content-Type": descriptor.media_type}
        )
        self._check(resp, f"pushing the manifest as tag {tag}", (201,))
        returned = resp.headers.get("Docker-Content-Digest")
        if returned and returned != descriptor.digest:
            raise PushError(f"the registry stored the manifest as {returned}, not {descriptor.digest}")
        return descriptor.digest


def push(image: Image, ref: Reference, session: requests.Session | None = None) -> Reference:
    """Push ``image`` as ``ref``'s tag; returns the reference pinned to the manifest's digest."""
    if ref.digest:
        raise UsageError(f"push to a tag, not a digest: {ref}")
    registry = Registry(ref, session)
    uploaded = skipped = 0
    for blob in (*image.layers, image.config):
        if registry.has_blob(blob.digest):
            skipped += 1
            continue
        log.info("pushing blob %s (%d bytes)", blob.digest[:19], blob.size)
        registry.put_blob(blob, image.blob_path(blob.digest))
        uploaded += 1
    digest = registry.put_manifest(
        image.manifest, image.blob_path(image.manifest.digest).read_bytes(), ref.tag
    )
    log.info("pushed %s (%d blobs uploaded, %d already there)", ref.with_digest(digest), uploaded, skipped)
    return ref.with_digest(digest)
