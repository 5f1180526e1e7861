"""Image references as Kubernetes and container runtimes read them: ``[registry/]repository[:tag][@digest]``.

The first path component is a registry when it has a '.' or a ':' or is ``localhost``; otherwise the image
lives on Docker Hub (``docker.io``, repository ``library/<name>`` for one-component names).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port], as written (docker.io for Docker Hub)
    repository: str
    tag: str = "latest"
    digest: str = ""

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def host(self) -> str:
        """The registry's host name or address, without the port."""
        if self.registry.startswith("["):
            return self.registry[1 : self.registry.index("]")]
        return self.registry.rsplit(":", 1)[0] if ":" in self.registry else self.registry

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}" + (f"@{self.digest}" if self.digest else "")

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)


def parse(text: str) -> Reference:
    """Parse a reference; a clear UsageError says what is wrong with a bad one."""
    rest, digest = text, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise UsageError(f"image reference {text!r}: the digest must be sha256:<64 hex digits>")
    tag = "latest"
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise UsageError(f"image reference {text!r}: invalid tag {tag!r}")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, rest
        if "/" not in repository:
            repository = f"library/{repository}"
    if not repository or not all(_COMPONENT.match(part) for part in repository.split("/")):
        raise UsageError(
            f"image reference {text!r}: the repository must be lowercase letters, digits and separators "
            "('.', '_', '-') in '/'-separated parts, e.g. registry.example:5000/models/iris:3"
        )
    return Reference(registry, repository, tag, digest)
