"""SIGKILL the exporter at each stage: TF Serving never sees an incomplete version, the next run recovers."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from servedmodel_exporter.checkpoints import (
    EXPORTED,
    PRUNING,
    RENAMED,
    STAGING_CREATED,
    SYNCED,
    VERIFIED,
    VERSION_CHOSEN,
)
from servedmodel_exporter.errors import EXIT_OK
from servedmodel_exporter.publish import DELETING_PREFIX, STAGING_PREFIX, parse_version

pytestmark = pytest.mark.slow


def _kill(process) -> None:  # noqa: ANN001
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    process.stdout.close()
    process.stderr.close()


@pytest.mark.parametrize("stage", [STAGING_CREATED, EXPORTED, VERIFIED, SYNCED, VERSION_CHOSEN, RENAMED])
def test_killed_publish_leaves_only_complete_versions(
    stage: str,
    sequential,
    base: Path,
    start_cli: Callable,
    wait_for_pause: Callable,
    run_cli: Callable,
    assert_complete: Callable,
    assert_published: Callable,
) -> None:
    args = ("publish", sequential.keras_path, "--base-path", base, "--model", "m")
    process = start_cli(*args, pause_at=stage)
    wait_for_pause(process, stage)
    _kill(process)

    root = base / "m"
    leftovers = sorted(p.name for p in root.iterdir() if p.name.startswith(STAGING_PREFIX))
    assert leftovers, "the killed run leaves its staging folder or at least its owner file"
    versions = sorted(p.name for p in root.iterdir() if parse_version(p.name) is not None)
    if stage == RENAMED:  # the rename is the commit point: from then on the version is complete
        assert versions == ["1"]
        assert_complete(root / "1")
    else:
        assert versions == []

    code, result, err = run_cli(*args)  # the same command again, as a Job's retry runs it
    assert code == EXIT_OK, err
    assert sorted(result["cleaned_leftovers"]) == leftovers
    assert result["version"] == 1  # after the rename: the version the killed run published
    assert result["already_published"] is (stage == RENAMED)
    assert_published(root, {1})


def test_killed_retention_never_exposes_a_half_deleted_version(
    variants: list[Path],
    base: Path,
    start_cli: Callable,
    wait_for_pause: Callable,
    run_cli: Callable,
    assert_complete: Callable,
    assert_published: Callable,
) -> None:
    for source in variants[:2]:
        assert run_cli("publish", source, "--base-path", base, "--model", "m")[0] == EXIT_OK
    args = ("publish", variants[2], "--base-path", base, "--model", "m")
    process = start_cli(*args, "--keep", "1", pause_at=PRUNING)
    wait_for_pause(process, PRUNING)
    _kill(process)

    root = base / "m"
    doomed = [p.name for p in root.iterdir() if p.name.startswith(DELETING_PREFIX)]
    assert len(doomed) == 1 and doomed[0].startswith(f"{DELETING_PREFIX}2-")
    assert not any(p.name.startswith(STAGING_PREFIX) for p in root.iterdir()), "owner released after rename"
    assert sorted(p.name for p in root.iterdir() if parse_version(p.name) is not None) == ["1", "3"]
    assert_complete(root / "1")
    assert_complete(root / "3")

    code, result, err = run_cli("publish", variants[3], "--base-path", base, "--model", "m", "--keep", "1")
    assert code == EXIT_OK, err
    assert result["cleaned_leftovers"] == doomed and result["removed_versions"] == [1, 3]
    assert_published(root, {4})
