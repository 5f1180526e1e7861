"""Several publisher processes on one model at once: each gets its own version, with or without the lock."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from servedmodel_exporter.checkpoints import PAUSE_MARKER, PAUSE_MODE_ENV, VERSION_CHOSEN
from servedmodel_exporter.errors import EXIT_OK, EXIT_VERSION_EXISTS
from servedmodel_exporter.publish import LOCK_DIR_ENV

pytestmark = pytest.mark.slow

PUBLISHERS = 4


def _finish(process) -> tuple[int, dict]:  # noqa: ANN001
    out, err = process.communicate(timeout=300)
    return process.returncode, json.loads(out) if out.strip() else {"stderr": err}


def test_concurrent_auto_publishers_get_distinct_complete_versions(
    variants: list[Path], base: Path, start_cli: Callable, assert_published: Callable
) -> None:
    sources = variants[:PUBLISHERS]
    processes = [
        start_cli("publish", source, "--base-path", base, "--model", "m", "--json") for source in sources
    ]
    results = [_finish(p) for p in processes]
    assert [code for code, _ in results] == [EXIT_OK] * PUBLISHERS, results
    assert sorted(r["version"] for _, r in results) == list(range(1, PUBLISHERS + 1))
    assert_published(base / "m", set(range(1, PUBLISHERS + 1)))


def test_concurrent_publishers_of_one_explicit_version(
    built_models: dict, base: Path, start_cli: Callable, assert_published: Callable
) -> None:
    """The same source twice is one publish and one report of it; another source is refused."""
    args = ("--base-path", base, "--model", "m", "--version", "9", "--json")
    same = [start_cli("publish", built_models["sequential"].keras_path, *args) for _ in range(2)]
    results = [_finish(p) for p in same]
    assert [code for code, _ in results] == [EXIT_OK, EXIT_OK], results
    assert sorted(r["already_published"] for _, r in results) == [False, True]
    other = _finish(start_cli("publish", built_models["normalized"].keras_path, *args))
    assert other[0] == EXIT_VERSION_EXISTS
    assert_published(base / "m", {9})


def test_publishers_whose_locks_are_not_shared_never_take_the_same_version(
    tmp_path: Path,
    variants: list[Path],
    base: Path,
    start_cli: Callable,
    assert_published: Callable,
) -> None:
    """As on NFS mounted with local locks: each publisher has its own lock, so only the rename decides.

    The first publisher stops right after choosing version 1 (under its lock); the second, with a lock of
    its own, publishes 1 meanwhile; the first then loses the no-replace rename and takes 2.
    """
    first_src, second_src = variants[:2]
    args = ("--base-path", base, "--model", "m", "--json")
    (tmp_path / "node-a").mkdir()
    (tmp_path / "node-b").mkdir()
    first = start_cli(
        "publish",
        first_src,
        *args,
        pause_at=VERSION_CHOSEN,
        env={PAUSE_MODE_ENV: "stop", LOCK_DIR_ENV: str(tmp_path / "node-a")},
    )
    for line in first.stderr:
        if line.strip() == f"{PAUSE_MARKER} {VERSION_CHOSEN}":
            break
    else:
        pytest.fail(f"the first publisher exited with {first.wait()} before choosing its version")
    second = _finish(start_cli("publish", second_src, *args, env={LOCK_DIR_ENV: str(tmp_path / "node-b")}))
    assert second[0] == EXIT_OK and second[1]["version"] == 1, second
    first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == EXIT_OK, err
    assert json.loads(out)["version"] == 2
    assert "version 1 appeared meanwhile" in err
    assert_published(base / "m", {1, 2})
