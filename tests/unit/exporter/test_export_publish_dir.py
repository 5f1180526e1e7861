"""Version folders, staging, leftovers, no-replace rename and retention, on a real filesystem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from servedmodel_exporter.errors import PublishError, UsageError, VersionExistsError
from servedmodel_exporter.publish import (
    DELETING_PREFIX,
    OWNER_SUFFIX,
    STAGING_PREFIX,
    ModelDir,
    fsync_tree,
    parse_version,
)


@pytest.fixture
def model_dir(tmp_path: Path) -> ModelDir:
    md = ModelDir(tmp_path / "base", "m")
    md.ensure()
    return md


def _version_dir(md: ModelDir, name: str) -> Path:
    path = md.root / name
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"pb")
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1", 1),
        ("0007", 7),
        (" 12 ", 12),
        ("-3", -3),
        ("1.0", None),
        ("v1", None),
        (".staging-1-ab", None),
        ("temp-123", None),
        ("", None),
        ("9" * 30, None),
    ],
)
def test_parse_version_follows_tf_serving(name: str, expected: int | None) -> None:
    assert parse_version(name) == expected


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", ".hidden"])
def test_invalid_model_names_are_usage_errors(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match="invalid model name"):
        ModelDir(tmp_path, name)


def test_versions_ignore_non_numeric_and_files(model_dir: ModelDir) -> None:
    _version_dir(model_dir, "3")
    _version_dir(model_dir, "010")
    _version_dir(model_dir, ".staging-1-aa")
    (model_dir.root / "5").write_text("a file, not a version")
    assert sorted(model_dir.versions()) == [3, 10]


def test_check_free_compares_numbers_not_names(model_dir: ModelDir) -> None:
    _version_dir(model_dir, "007")
    with pytest.raises(VersionExistsError, match="version 7 of m already exists"):
        model_dir.check_free(7)
    model_dir.check_free(8)


def test_commit_renames_staging_and_releases_owner(model_dir: ModelDir) -> None:
    with model_dir.lock():
        staging = model_dir.new_staging()
    assert staging.path.name.startswith(f"{STAGING_PREFIX}{os.getpid()}-")
    assert parse_version(staging.path.name) is None
    (staging.path / "saved_model.pb").write_bytes(b"pb")
    fsync_tree(staging.path)
    with model_dir.lock():
        target = model_dir.commit(staging, 4)
    assert (target / "saved_model.pb").read_bytes() == b"pb"
    assert sorted(p.name for p in model_dir.root.iterdir()) == [".lock", "4"]


def test_commit_never_replaces_an_existing_version(model_dir: ModelDir) -> None:
    (model_dir.root / "2").mkdir()  # even an empty folder, which plain rename(2) would replace
    with model_dir.lock():
        staging = model_dir.new_staging()
        with pytest.raises(VersionExistsError, match="appeared while publishing"):
            model_dir.commit(staging, 2)
    assert staging.path.is_dir()
    assert list((model_dir.root / "2").iterdir()) == []
    staging.discard()
    assert not staging.path.exists() and not staging.owner_path.exists()


def test_clean_leftovers_removes_dead_staging_only(model_dir: ModelDir) -> None:
    with model_dir.lock():
        alive = model_dir.new_staging()
        dead = model_dir.new_staging()
    os.close(dead.owner_fd)  # what a crash does: the flock goes away, the files stay
    orphan_owner = model_dir.root / f"{STAGING_PREFIX}99-dead{OWNER_SUFFIX}"
    orphan_owner.touch()
    no_owner = model_dir.root / f"{STAGING_PREFIX}98-noowner"
    no_owner.mkdir()
    deleting = model_dir.root / f"{DELETING_PREFIX}3-abcd"
    deleting.mkdir()
    published = _version_dir(model_dir, "1")

    with model_dir.lock():
        removed = model_dir.clean_leftovers()

    assert sorted(removed) == sorted(
        [dead.path.name, dead.owner_path.name, orphan_owner.name, no_owner.name, deleting.name]
    )
    assert alive.path.is_dir() and alive.owner_path.is_file() and published.is_dir()
    alive.discard()


def test_prune_keeps_highest_pinned_and_protected(model_dir: ModelDir) -> None:
    for v in range(1, 7):
        _version_dir(model_dir, str(v))
    with model_dir.lock():
        removed = model_dir.prune(keep=2, pins=[1, 3], protect=6)
    assert removed == [2, 4]
    assert sorted(model_dir.versions()) == [1, 3, 5, 6]
    assert not any(p.name.startswith(DELETING_PREFIX) for p in model_dir.root.iterdir())


def test_prune_never_removes_the_version_just_published(model_dir: ModelDir) -> None:
    for v in (1, 50, 60):
        _version_dir(model_dir, str(v))
    with model_dir.lock():
        removed = model_dir.prune(keep=1, pins=[], protect=1)  # an explicit low version was just published
    assert removed == [50]
    assert sorted(model_dir.versions()) == [1, 60]


def test_ensure_fails_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PublishError, match="cannot create .*Not a directory"):
        ModelDir(blocker / "base", "m").ensure()
