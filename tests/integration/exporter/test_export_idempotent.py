"""Publishing is idempotent by the source's sha256: a retried export reports what it published before.

A Job's pod can fail after its version is renamed into place (a retention failure, a node lost after the
rename); Kubernetes then runs the same command again. That run must neither publish a second copy under
`auto` nor fail on the explicit version it published itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from servedmodel_exporter.checkpoints import RENAMED
from servedmodel_exporter.errors import EXIT_OK, EXIT_VERSION_EXISTS
from servedmodel_exporter.sources import file_sha256, tree_sha256


def test_auto_twice_reports_the_first_version(
    sequential, base: Path, run_cli: Callable, assert_published: Callable
) -> None:
    code, first, err = run_cli("publish", sequential.keras_path, "--base-path", base, "--model", "m")
    assert code == EXIT_OK, err
    assert first["version"] == 1 and first["already_published"] is False
    before = tree_sha256(base / "m" / "1")

    code, again, err = run_cli("publish", sequential.keras_path, "--base-path", base, "--model", "m")
    assert code == EXIT_OK, err
    assert again["version"] == 1 and again["already_published"] is True
    assert again["path"] == str(base / "m" / "1")
    assert again["source"]["sha256"] == file_sha256(sequential.keras_path)
    assert "was already published from this source" in err
    assert_published(base / "m", {1})
    assert tree_sha256(base / "m" / "1") == before


def test_explicit_version_already_published_from_the_same_source_succeeds(
    built_models: dict, base: Path, run_cli: Callable, assert_published: Callable
) -> None:
    source = built_models["sequential"].keras_path
    args = ("--base-path", base, "--model", "m", "--version", "4")
    assert run_cli("publish", source, *args)[0] == EXIT_OK
    code, again, err = run_cli("publish", source, *args)
    assert code == EXIT_OK, err
    assert again["version"] == 4 and again["already_published"] is True
    # Another source for the same number is still refused: versions are immutable.
    code, other, _ = run_cli("publish", built_models["normalized"].keras_path, *args)
    assert code == EXIT_VERSION_EXISTS and "version 4 of m already exists" in other["error"]["message"]
    assert_published(base / "m", {4})


def test_known_sha256_of_a_published_version_needs_no_download(
    sequential, base: Path, http_root: tuple[Path, str], run_cli: Callable
) -> None:
    root, url = http_root
    shutil.copy(sequential.keras_path, root / "m.keras")
    digest = file_sha256(sequential.keras_path)
    args = ("--base-path", base, "--model", "m", "--version", "2", "--sha256", digest)
    assert run_cli("publish", f"{url}/m.keras", *args)[0] == EXIT_OK
    (root / "m.keras").unlink()  # the retry must not need the source again
    code, again, err = run_cli("publish", f"{url}/m.keras", *args)
    assert code == EXIT_OK, err
    assert again["version"] == 2 and again["already_published"] is True and "downloading" not in err


@pytest.mark.slow
def test_a_retry_after_a_crash_past_the_rename_reports_the_version_and_finishes_retention(
    built_models: dict,
    base: Path,
    start_cli: Callable,
    wait_for_pause: Callable,
    run_cli: Callable,
    assert_published: Callable,
) -> None:
    old = built_models["normalized"].keras_path
    assert run_cli("publish", old, "--base-path", base, "--model", "m")[0] == EXIT_OK  # version 1
    source = built_models["sequential"].keras_path
    args = ("publish", source, "--base-path", base, "--model", "m", "--keep", "1")
    process = start_cli(*args, pause_at=RENAMED)  # renamed, then "the node is lost" before retention
    wait_for_pause(process, RENAMED)
    process.kill()
    process.wait()
    assert {p.name for p in (base / "m").iterdir() if p.name.isdigit()} == {"1", "2"}

    code, retried, err = run_cli(*args)  # what the Job controller's next pod runs
    assert code == EXIT_OK, err
    assert retried["version"] == 2 and retried["already_published"] is True
    assert retried["removed_versions"] == [1]
    assert retried["cleaned_leftovers"]  # the killed run's staging owner file
    assert_published(base / "m", {2})


def test_a_version_taken_by_another_known_sha256_fails_before_downloading(
    sequential, base: Path, http_root: tuple[Path, str], run_cli: Callable
) -> None:
    _, url = http_root
    args = ("--base-path", base, "--model", "m", "--version", "2")
    assert run_cli("publish", sequential.keras_path, *args)[0] == EXIT_OK
    # The URL does not exist: a download would fail with a source error (3), not say the version is taken.
    code, result, err = run_cli("publish", f"{url}/other.keras", *args, "--sha256", "b" * 64)
    assert code == EXIT_VERSION_EXISTS, err
    assert "version 2 of m already exists" in result["error"]["message"] and "downloading" not in err
