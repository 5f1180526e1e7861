"""Volumes as users have them: a full disk, a small temporary folder, another user, a restrictive umask.

The disks are real tmpfs mounts made for the test (the suite runs as root), filled up with a real file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import pytest
from servedmodel_exporter.errors import EXIT_NO_SPACE, EXIT_OK
from servedmodel_exporter.publish import LOCK_NAME
from servedmodel_exporter.sources import tree_sha256

MODEL_SERVER_UID = 1000  # the operator runs TF Serving as this user (constants.RUN_AS_USER)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount tmpfs file systems of a given size; unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)], check=True
        )
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the disk with one file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.truncate(0)
        os.posix_fallocate(f.fileno(), 0, max(free - leave, 0))
    return filler


def _medium_model(folder: Path) -> Path:
    """About 1 MB of weights: more than the small disks below can hold."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((256,), name="x"), keras.layers.Dense(1024), keras.layers.Dense(2)])
    path = folder / "medium.keras"
    model.save(path)
    return path


def test_publish_onto_a_full_volume_fails_cleanly_and_served_versions_stay(
    sequential, tmp_path: Path, small_disk: Callable, run_cli: Callable, assert_published: Callable
) -> None:
    base = small_disk("8m")
    assert run_cli("publish", sequential.keras_path, "--base-path", base, "--model", "m")[0] == EXIT_OK
    served = tree_sha256(base / "m" / "1")
    _fill(base, leave=64 * 1024)
    code, result, err = run_cli("publish", _medium_model(tmp_path), "--base-path", base, "--model", "m")
    assert code == EXIT_NO_SPACE, err
    message = result["error"]["message"]
    assert message.startswith(f"no space left on the model volume ({base / 'm'})"), message
    assert "nothing was published" in message
    assert_published(base / "m", {1})  # no staging folder, no owner file, no version 2
    assert tree_sha256(base / "m" / "1") == served


def test_download_into_a_too_small_temporary_folder(
    tmp_path: Path,
    base: Path,
    small_disk: Callable,
    http_root: tuple[Path, str],
    start_cli: Callable,
) -> None:
    root, url = http_root
    shutil.copy(_medium_model(tmp_path), root / "medium.keras")
    tmp = small_disk("256k")
    process = start_cli(
        "publish",
        f"{url}/medium.keras",
        "--base-path",
        base,
        "--model",
        "m",
        "--json",
        env={"TMPDIR": str(tmp)},
    )
    out, err = process.communicate(timeout=300)
    assert process.returncode == EXIT_NO_SPACE, err
    message = json.loads(out)["error"]["message"]
    assert f"no space left in the temporary folder {tmp}/servedmodel-export-" in message, message
    assert f"while downloading {url}/medium.keras" in message
    assert list(tmp.iterdir()) == []  # the partial download is gone
    assert {p.name for p in (base / "m").iterdir()} <= {LOCK_NAME}  # nothing published, nothing staged


def test_published_versions_are_readable_by_the_model_servers_user_whatever_the_umask(
    sequential, start_cli: Callable
) -> None:
    top = Path(tempfile.mkdtemp(prefix="servedmodel-perms-", dir="/tmp"))  # not under pytest's 0700 folder
    try:
        os.chmod(top, 0o755)
        base = top / "volume" / "models"
        process = start_cli(
            "publish", sequential.keras_path, "--base-path", base, "--model", "m", "--json", umask=0o077
        )
        out, err = process.communicate(timeout=300)
        assert process.returncode == EXIT_OK, err
        version = Path(json.loads(out)["path"])
        paths = [base.parent, base, base / "m", *version.rglob("*"), version]
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in paths}
        assert {oct(m) for p, m in modes.items() if p.is_dir()} == {"0o755"}, modes
        assert {oct(m) for p, m in modes.items() if p.is_file()} == {"0o644"}, modes
        # And the proof: TF Serving's user lists and reads every file of the version.
        for path in [p for p in version.rglob("*") if p.is_file()]:
            subprocess.run(
                [
                    "setpriv",
                    f"--reuid={MODEL_SERVER_UID}",
                    f"--regid={MODEL_SERVER_UID}",
                    "--clear-groups",
                    "cat",
                    str(path),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
    finally:
        shutil.rmtree(top)
