"""The CLI's help, argument validation and exit codes for usage errors (no model is built)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servedmodel_exporter.cli import main
from servedmodel_exporter.errors import EXIT_OK, EXIT_USAGE


def test_help_teaches_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["publish", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == EXIT_OK
    assert "examples:" in out and "servedmodel-export publish model.keras" in out
    for line in (
        "2  usage error",
        "3  source error",
        "4  verification failed",
        "5  the requested version",
        "6  publish/IO error",
    ):
        assert line in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["publish", "m.keras", "--base-path", "b", "--model", "m", "--version", "1.5"], "expected 'auto'"),
        (["publish", "m.keras", "--base-path", "b", "--model", "m", "--keep", "0"], "expected at least 1"),
        (["publish", "m.keras", "--model", "m"], "--base-path"),
        (["list", "--base-path", "b"], "--model"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_semantic_usage_errors_exit_2_with_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "publish",
        str(tmp_path / "m.keras"),
        "--base-path",
        str(tmp_path),
        "--model",
        "m",
        "--pin",
        "3",
        "--json",
    ]
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["ok"] is False and result["error"]["exit_code"] == EXIT_USAGE
    assert "--pin only makes sense with --keep" in result["error"]["message"]
    assert "error: --pin only makes sense" in captured.err
    assert not (tmp_path / "m").exists()


def test_warmup_above_tf_serving_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["publish", "m.keras", "--base-path", str(tmp_path), "--model", "m", "--warmup", "1001"]
    assert main(argv) == EXIT_USAGE
    assert "between 0 and 1000" in capsys.readouterr().err
