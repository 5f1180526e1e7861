"""--result-file: the short JSON the operator's export Job leaves in /dev/termination-log."""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf


def test_result_file_reports_the_published_version(sequential, base: Path, run_cli, tmp_path: Path) -> None:
    result_file = tmp_path / "termination-log"
    code, result, err = run_cli(
        "publish", sequential.keras_path, "--base-path", base, "--model", "m", "--result-file", result_file
    )
    assert code == 0, err
    written = json.loads(result_file.read_text())
    assert written == {
        "ok": True,
        "version": result["version"],
        "path": str(base / "m" / "1"),
        "already_published": False,
        "tensorflow_version": tf.__version__,
    }
    assert len(result_file.read_bytes()) <= 4096


def test_result_file_reports_the_error(built_models, base: Path, run_cli, tmp_path: Path) -> None:
    result_file = tmp_path / "termination-log"
    first = built_models["sequential"].keras_path
    code, _, _ = run_cli("publish", first, "--base-path", base, "--model", "m", "--version", "1")
    assert code == 0
    code, result, _ = run_cli(
        "publish",
        built_models["normalized"].keras_path,
        "--base-path",
        base,
        "--model",
        "m",
        "--version",
        "1",
        "--result-file",
        result_file,
    )
    written = json.loads(result_file.read_text())
    assert code == written["exit_code"] == 5
    assert written["ok"] is False and "exists" in written["error"]
