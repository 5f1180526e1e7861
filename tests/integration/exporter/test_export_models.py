"""Publishing real Keras models and SavedModels, then reading them back the way TF Serving would."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from servedmodel_exporter import warmup
from servedmodel_exporter.cli import main
from servedmodel_exporter.errors import EXIT_OK
from servedmodel_exporter.sources import file_sha256, tree_sha256

RunCli = Callable[..., tuple[int, dict, str]]


def _serve(version_dir: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _keras_outputs(model: keras.Model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    args = next(iter(inputs.values())) if len(model.inputs) == 1 else inputs
    flat = tf.nest.flatten(model(args, training=False))
    return {f"output_{i}": np.asarray(t) for i, t in enumerate(flat)}


@pytest.mark.parametrize("name", ["sequential", "two_inputs", "normalized"])
def test_publish_keras_model_serves_same_outputs(
    name: str, built_models: dict, base: Path, run_cli: RunCli, assert_published: Callable
) -> None:
    built = built_models[name]
    code, result, err = run_cli("publish", built.keras_path, "--base-path", base, "--model", name)

    assert code == EXIT_OK, err
    assert result["ok"] and result["version"] == 1 and result["path"] == str(base / name / "1")
    assert "verifying the staged SavedModel" in err  # progress goes to stderr
    assert_published(base / name, {1})
    inputs = built.sample(seed=11)
    served, expected = _serve(base / name / "1", inputs), _keras_outputs(built.model, inputs)
    assert served.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(served[key], expected[key], rtol=1e-5, atol=1e-5)


def test_normalization_statistics_travel_with_the_model(
    built_models: dict, base: Path, run_cli: RunCli
) -> None:
    built = built_models["normalized"]
    assert run_cli("publish", built.keras_path, "--base-path", base, "--model", "norm")[0] == EXIT_OK
    norm = next(layer for layer in built.model.layers if isinstance(layer, keras.layers.Normalization))
    assert abs(float(np.mean(norm.mean)) - 5.0) < 1.5  # adapted, not the identity defaults
    at_mean = {"raw": np.reshape(np.asarray(norm.mean, np.float32), (1, 3))}  # normalizes to zeros
    dense = built.model.layers[-1]
    np.testing.assert_allclose(
        _serve(base / "norm" / "1", at_mean)["output_0"], [dense.bias.numpy()], atol=1e-5
    )


def test_manifest_and_signature_summary(sequential, base: Path, run_cli: RunCli) -> None:
    run_cli("publish", sequential.keras_path, "--base-path", base, "--model", "m")
    extra = base / "m" / "1" / "assets.extra"
    manifest = json.loads((extra / "servedmodel-manifest.json").read_text())

    assert manifest["source"] == {
        "uri": str(sequential.keras_path),
        "kind": "keras",
        "sha256": file_sha256(sequential.keras_path),
    }
    assert manifest["tensorflow_version"] == tf.__version__ and manifest["keras_version"] == keras.__version__
    assert manifest["created_utc"].endswith("+00:00")
    serving = manifest["signatures"]["serving_default"]
    assert serving["method"] == "tensorflow/serving/predict"
    assert serving["inputs"]["features"] == {
        "dtype": "DT_FLOAT",
        "shape": [-1, 4],
        "tensor": "serving_default_features:0",
    }
    assert manifest["verification"]["sample_inputs"] == "generated"
    summary = (extra / "signatures.txt").read_text()
    assert "inputs['features'] tensor_info:" in summary and "shape: (-1, 4)" in summary


def test_auto_versions_increase_and_explicit_versions_are_respected(
    variants: list[Path], base: Path, run_cli: RunCli, assert_published: Callable
) -> None:
    (base / "m").mkdir()
    (base / "m" / "not-a-version").mkdir()
    extras = ([], ["--version", "10"], [], ["--version", "auto"])
    versions = [
        run_cli("publish", source, "--base-path", base, "--model", "m", *extra)[1]["version"]
        for source, extra in zip(variants[:4], extras, strict=True)
    ]
    assert versions == [1, 10, 11, 12]
    shutil.rmtree(base / "m" / "not-a-version")
    assert_published(base / "m", {1, 10, 11, 12})


def test_legacy_h5_source(
    sequential, tmp_path: Path, base: Path, run_cli: RunCli, assert_published: Callable
) -> None:
    h5 = tmp_path / "legacy.h5"
    sequential.model.save(h5)
    code, result, err = run_cli("publish", h5, "--base-path", base, "--model", "legacy")
    assert code == EXIT_OK, err
    assert result["source"]["kind"] == "h5"
    assert_published(base / "legacy", {1})


def test_saved_model_folder_is_verified_then_copied(
    built_models: dict, tmp_path: Path, base: Path, run_cli: RunCli, assert_published: Callable
) -> None:
    built = built_models["two_inputs"]
    folder = tmp_path / "exported"
    built.model.export(str(folder), format="tf_saved_model", verbose=False)
    code, result, err = run_cli(
        "publish", folder, "--base-path", base, "--model", "copy", "--sha256", tree_sha256(folder)
    )
    assert code == EXIT_OK, err
    assert result["source"]["kind"] == "saved_model"
    assert_published(base / "copy", {1})
    assert (base / "copy" / "1" / "saved_model.pb").read_bytes() == (folder / "saved_model.pb").read_bytes()


def test_user_sample_inputs_json_and_npy(
    built_models: dict, tmp_path: Path, base: Path, run_cli: RunCli
) -> None:
    as_json = tmp_path / "inputs.json"
    as_json.write_text(json.dumps({"alpha": [[1, 2, 3]], "beta": [[4, 5]]}))
    code, result, err = run_cli(
        "publish",
        built_models["two_inputs"].keras_path,
        "--base-path",
        base,
        "--model",
        "two",
        "--sample-inputs",
        as_json,
    )
    assert code == EXIT_OK, err
    as_npy = tmp_path / "inputs.npy"
    np.save(as_npy, np.arange(12, dtype=np.float32).reshape(3, 4))
    code, result, err = run_cli(
        "publish",
        built_models["sequential"].keras_path,
        "--base-path",
        base,
        "--model",
        "seq",
        "--sample-inputs",
        as_npy,
    )
    assert code == EXIT_OK, err
    manifest = json.loads((base / "seq" / "1" / "assets.extra" / "servedmodel-manifest.json").read_text())
    assert manifest["verification"]["sample_inputs"] == str(as_npy)


def test_warmup_file_replays_through_the_published_model(
    built_models: dict, base: Path, run_cli: RunCli
) -> None:
    code, result, err = run_cli(
        "publish", built_models["two_inputs"].keras_path, "--base-path", base, "--model", "w", "--warmup", "3"
    )
    assert code == EXIT_OK, err
    logs = warmup.read(base / "w" / "1" / "assets.extra" / warmup.WARMUP_FILE)
    assert len(logs) == 3 and result["warmup_records"] == 3
    request = logs[0].predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert sorted(request.inputs) == ["alpha", "beta"]
    outputs = _serve(base / "w" / "1", {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
    assert outputs["output_0"].shape == (2, 1)


def test_retention_keeps_newest_and_pinned(
    variants: list[Path], base: Path, run_cli: RunCli, assert_published: Callable
) -> None:
    for source in variants[:4]:
        run_cli("publish", source, "--base-path", base, "--model", "r")
    code, result, err = run_cli(
        "publish", variants[4], "--base-path", base, "--model", "r", "--keep", "2", "--pin", "1"
    )
    assert code == EXIT_OK, err
    assert result["version"] == 5 and result["removed_versions"] == [2, 3]
    assert_published(base / "r", {1, 4, 5})


def test_list_and_inspect(
    sequential, base: Path, run_cli: RunCli, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli("publish", sequential.keras_path, "--base-path", base, "--model", "li")
    foreign = base / "li" / "7"  # published by another tool: no manifest
    sequential.model.export(str(foreign), format="tf_saved_model", verbose=False)

    code, listing, _ = run_cli("list", "--base-path", base, "--model", "li")
    assert code == EXIT_OK
    assert [v["version"] for v in listing["versions"]] == [1, 7]
    assert listing["versions"][0]["manifest"]["source"]["kind"] == "keras"
    assert listing["versions"][1]["manifest"] is None
    assert "serving_default" in listing["versions"][1]["signatures"]

    assert main(["list", "--base-path", str(base), "--model", "li"]) == EXIT_OK
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["VERSION", "CREATED"] and table[2].startswith("7 ")

    assert main(["inspect", str(base / "li" / "1")]) == EXIT_OK
    details = capsys.readouterr().out
    assert "version 1 at" in details and "signature_def['serving_default']" in details
    code, inspected, _ = run_cli("inspect", base / "li")
    assert [v["version"] for v in inspected["versions"]] == [1, 7]
