"""The exporter image publishes a Keras model onto a mounted volume, run as the export Job runs it: its
non-root user 10001, a read-only root file system with HOME on a tmpfs /tmp, no capabilities, and a
network namespace of its own with only loopback.

The test's oracle is TensorFlow on the host: the published SavedModel must give the Keras model's outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ocirun import Mount, OciContainer  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPORTER_UID = 10001


def test_exporter_image_publishes_a_keras_model(built_image, tmp_path: Path) -> None:
    image = built_image("exporter")
    source = tmp_path / "source"
    source.mkdir(mode=0o755)
    model = keras.Sequential(
        [keras.Input((4,), name="features"), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    model.save(source / "model.keras")
    (source / "model.keras").chmod(0o644)
    models = tmp_path / "models"
    models.mkdir()
    os.chown(models, EXPORTER_UID, EXPORTER_UID)  # what the pod's fsGroup does for the shared volume

    with OciContainer(
        image,
        tmp_path / "container",
        args=["publish", "/source/model.keras", "--base-path", "/models", "--model", "iris", "--json"],
        env={"HOME": "/tmp"},
        mounts=[Mount("/source", source), Mount("/models", models, read_only=False)],
    ) as container:
        assert container.user == (EXPORTER_UID, EXPORTER_UID)  # from the image's USER
        assert {"type": "network"} in container.config["linux"]["namespaces"]
        code = container.run(timeout=600)
        assert code == 0, container.output()
        stdout = container.stdout()

    result = json.loads(stdout)  # --json: the result is the only thing on stdout
    assert result["version"] == 1
    version = models / "iris" / "1"
    assert (version / "saved_model.pb").is_file()
    assert version.stat().st_uid == EXPORTER_UID
    entries = sorted(p.name for p in (models / "iris").iterdir())
    assert [e for e in entries if not e.startswith(".")] == ["1"]
    assert not [e for e in entries if e.startswith(".staging")], f"staging folder left behind: {entries}"
    manifest = json.loads((version / "assets.extra" / "servedmodel-manifest.json").read_text())
    assert manifest["schema"] == 1
    assert manifest["source"]["uri"].endswith("model.keras")
    assert manifest["tensorflow_version"] == tf.__version__  # the image has the locked TensorFlow

    x = np.random.default_rng(3).standard_normal((5, 4)).astype("float32")
    serving = tf.saved_model.load(str(version)).signatures["serving_default"]
    (published,) = serving(features=tf.constant(x)).values()
    np.testing.assert_allclose(published.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
