"""Child names that always fit, whatever ServedModel name the CRD accepts.

A ServedModel's name is a DNS label of at most 63 characters; its children are named after it with a
suffix (`-config`, `-canary`, `-stable`, `-export-<hash>`). Services, and Jobs (whose name becomes a label
of their pods), must be DNS labels of at most 63 characters too, so a suffixed name that would be longer is
shortened the way Kubernetes names ReplicaSets: a prefix of the ServedModel's name, a hash of the whole
name (so two long names that share a prefix still differ), then the suffix. Names that fit are unchanged.
"""

from __future__ import annotations

import hashlib

NAME_MAX = 63  # a DNS label (RFC 1035), and a label value
HASH_LEN = 8


def child_name(owner: str, suffix: str = "") -> str:
    """`<owner>-<suffix>` when it fits in 63 characters, else `<owner prefix>-<hash of owner>-<suffix>`."""
    full = f"{owner}-{suffix}" if suffix else owner
    if len(full) <= NAME_MAX:
        return full
    digest = hashlib.sha256(owner.encode()).hexdigest()[:HASH_LEN]
    tail = f"-{digest}-{suffix}" if suffix else f"-{digest}"
    # The owner starts with a letter, so the prefix is never empty; no "-" before the hash's own "-".
    return owner[: NAME_MAX - len(tail)].rstrip("-") + tail
