"""Version folders under a base path and the version policy: FileSystemStoragePathSource (reference §5)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from .errors import INT64_MAX, TFError
from .model_config import ModelSpecConfig

Log = Callable[[str, str, str], None]  # (level, source file, message)


_SAFE_STRTO64 = re.compile(r"[ \t\n\v\f\r]*(-?[0-9]+)[ \t\n\v\f\r]*")


def parse_version_dir(name: str) -> int | None:
    """``strings::safe_strto64``: spaces around, optional '-', ASCII digits, int64 range; else None."""
    m = _SAFE_STRTO64.fullmatch(name)
    if not m:
        return None
    value = int(m.group(1))
    return value if -(2**63) <= value <= INT64_MAX else None


def aspired_versions(m: ModelSpecConfig, log: Log) -> dict[int, str]:
    """One poll of a model: aspired versions -> their directories, per the model's version policy.

    Raises NOT_FOUND when the base path is missing (the caller aborts the whole poll, §5).
    """
    if "://" in m.base_path or not os.path.isdir(m.base_path):
        raise TFError("NOT_FOUND", f"Could not find base path {m.base_path} for servable {m.name} with "
                      f"error NOT_FOUND: {m.base_path} not found")
    found: dict[int, str] = {}
    for child in sorted(os.listdir(m.base_path)):
        v = parse_version_dir(child)
        if v is None:
            continue  # non-numeric children are silently ignored
        if v in found:
            log("W", "file_system_storage_path_source.cc",
                f"Duplicate version directories detected. Version {v} will be loaded from "
                f"{found[v]}, {os.path.join(m.base_path, child)} will be ignored.")
            continue
        found[v] = os.path.join(m.base_path, child)
    if not found:
        log("W", "file_system_storage_path_source.cc",
            f"No versions of servable {m.name} found under base path {m.base_path}. Did you forget "
            f"to name your leaf directory as a number (eg. '/1/')?")
        return {}
    if m.policy == "all":
        return found
    if m.policy == "specific":
        for v in m.specific_versions:
            if v not in found:
                log("W", "file_system_storage_path_source.cc",
                    f"Version {v} of servable {m.name}, which was requested to be served as a "
                    f"'specific' version in the servable's version policy, was not found in the "
                    f"file system")
        return {v: p for v, p in found.items() if v in m.specific_versions}
    return {v: found[v] for v in sorted(found, reverse=True)[: m.num_versions]}
