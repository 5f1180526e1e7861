"""Several publisher processes on one model at once: serialized by the lock, each gets its own version."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from servedmodel_exporter.errors import EXIT_OK, EXIT_VERSION_EXISTS

pytestmark = pytest.mark.slow

PUBLISHERS = 4


def _finish(process) -> tuple[int, dict]:  # noqa: ANN001
    out, err = process.communicate(timeout=300)
    return process.returncode, json.loads(out) if out.strip() else {"stderr": err}


def test_concurrent_auto_publishers_get_distinct_complete_versions(
    built_models: dict, base: Path, start_cli: Callable, assert_published: Callable
) -> None:
    sources = [m.keras_path for m in built_models.values()]
    processes = [
        start_cli("publish", sources[i % len(sources)], "--base-path", base, "--model", "m", "--json")
        for i in range(PUBLISHERS)
    ]
    results = [_finish(p) for p in processes]
    assert [code for code, _ in results] == [EXIT_OK] * PUBLISHERS, results
    assert sorted(r["version"] for _, r in results) == list(range(1, PUBLISHERS + 1))
    assert_published(base / "m", set(range(1, PUBLISHERS + 1)))


def test_concurrent_publishers_of_one_explicit_version(
    sequential, base: Path, start_cli: Callable, assert_published: Callable
) -> None:
    processes = [
        start_cli(
            "publish", sequential.keras_path, "--base-path", base, "--model", "m", "--version", "9", "--json"
        )
        for _ in range(2)
    ]
    codes = sorted(_finish(p)[0] for p in processes)
    assert codes == [EXIT_OK, EXIT_VERSION_EXISTS]
    assert_published(base / "m", {9})
