"""Shared tiny Keras models, a local HTTP server and CLI runners for the exporter's integration tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL)
import numpy as np  # noqa: E402
from httpfolder import http_root  # noqa: E402, F401  (a fixture: a local HTTP server serving a folder)
from servedmodel_exporter.checkpoints import PAUSE_MARKER  # noqa: E402
from servedmodel_exporter.cli import main  # noqa: E402
from servedmodel_exporter.publish import LOCK_NAME, parse_version  # noqa: E402

EXPORTER_DIR = Path(__file__).resolve().parents[3] / "exporter"


@dataclass(frozen=True)
class BuiltModel:
    model: keras.Model
    keras_path: Path

    def sample(self, seed: int = 7, batch: int = 3) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {
            t.name: rng.standard_normal((batch, *t.shape[1:])).astype("float32") for t in self.model.inputs
        }


def _sequential() -> keras.Model:
    return keras.Sequential(
        [keras.Input((4,), name="features"), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )


def _two_inputs() -> keras.Model:
    alpha, beta = keras.Input((3,), name="alpha"), keras.Input((2,), name="beta")
    joined = keras.layers.Concatenate()([alpha, beta])
    return keras.Model(
        [alpha, beta], [keras.layers.Dense(1)(joined), keras.layers.Dense(2, activation="tanh")(joined)]
    )


def _normalized() -> keras.Model:
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(0).normal(loc=5.0, scale=3.0, size=(64, 3)).astype("float32"))
    inputs = keras.Input((3,), name="raw")
    return keras.Model(inputs, keras.layers.Dense(1)(norm(inputs)))


@pytest.fixture(scope="session")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltModel]:
    """The three model shapes the exporter must handle, each saved once as a .keras file."""
    keras.utils.set_random_seed(1)
    folder = tmp_path_factory.mktemp("models")
    built = {}
    for name, build in (
        ("sequential", _sequential),
        ("two_inputs", _two_inputs),
        ("normalized", _normalized),
    ):
        model = build()
        path = folder / f"{name}.keras"
        model.save(path)
        built[name] = BuiltModel(model, path)
    return built


@pytest.fixture(scope="session")
def variants(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six .keras files of one small shape with different weights: six different sources (sha256), for
    tests that need several versions (publishing one source twice reports its first version)."""
    folder = tmp_path_factory.mktemp("variants")
    paths = []
    for seed in range(6):
        keras.utils.set_random_seed(100 + seed)
        paths.append(folder / f"variant{seed}.keras")
        _sequential().save(paths[-1])
    return paths


@pytest.fixture(scope="session")
def sequential(built_models: dict[str, BuiltModel]) -> BuiltModel:
    return built_models["sequential"]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, dict, str]]:
    """Run the CLI in-process with --json: (exit code, parsed stdout, stderr)."""

    def run(*argv: object) -> tuple[int, dict, str]:
        code = main([str(a) for a in argv] + ["--json"])
        captured = capsys.readouterr()
        return code, json.loads(captured.out), captured.err

    return run


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(EXPORTER_DIR), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("SERVEDMODEL_EXPORTER_TEST_PAUSE_AT", None)
    return env


@pytest.fixture
def start_cli(cli_env: dict[str, str]) -> Callable[..., subprocess.Popen[str]]:
    """Start ``servedmodel-export`` in a subprocess (optionally paused at a stage)."""

    def start(
        *argv: object, pause_at: str | None = None, env: dict[str, str] | None = None, umask: int = -1
    ) -> subprocess.Popen[str]:
        env = {**cli_env, **(env or {})}
        if pause_at:
            env["SERVEDMODEL_EXPORTER_TEST_PAUSE_AT"] = pause_at
        return subprocess.Popen(
            [sys.executable, "-m", "servedmodel_exporter.cli", *map(str, argv)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            umask=umask,
        )

    return start


@pytest.fixture(scope="session")
def wait_for_pause() -> Callable[[subprocess.Popen[str], str], None]:
    """Block until a subprocess started with ``pause_at`` reports that it is frozen at that stage."""

    def wait(process: subprocess.Popen[str], stage: str) -> None:
        seen = []
        for line in process.stderr:
            if line.strip() == f"{PAUSE_MARKER} {stage}":
                return
            seen.append(line)
        pytest.fail(f"exporter exited with {process.wait()} before reaching {stage}:\n{''.join(seen)}")

    return wait


def _check_complete(version_dir: Path) -> None:
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    assert list((version_dir / "variables").glob("variables.data-*"))
    assert (version_dir / "assets.extra" / "servedmodel-manifest.json").is_file()
    assert "signature_def['serving_default']" in (version_dir / "assets.extra" / "signatures.txt").read_text()


@pytest.fixture(scope="session")
def assert_complete() -> Callable[[Path], None]:
    """Check one version folder holds everything TF Serving and the exporter's readers need."""
    return _check_complete


@pytest.fixture(scope="session")
def assert_published() -> Callable[[Path, set[int]], None]:
    """Check the layout TF Serving expects: exactly ``versions``, each complete, nothing half-done."""

    def check(model_root: Path, versions: set[int]) -> None:
        children = {p.name for p in model_root.iterdir()}
        numeric = {name for name in children if parse_version(name) is not None}
        assert {int(n) for n in numeric} == versions
        assert children - numeric <= {LOCK_NAME}, f"leftovers: {sorted(children - numeric - {LOCK_NAME})}"
        for name in numeric:
            _check_complete(model_root / name)

    return check
