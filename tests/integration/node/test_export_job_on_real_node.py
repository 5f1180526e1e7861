"""spec.export end to end on the real node: the operator's Job runs the exporter image under a real kubelet.

What only a real kubelet shows: the pod runs as the image's non-root user on a real volume, the kubelet
copies the exporter's --result-file from /dev/termination-log into the pod status (the operator reads the
version and the TensorFlow release from there), the Job controller applies the podFailurePolicy to a real
exit code, and a changed export of a source already published reports that version.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from exportjobs import export_record, job_pods, wait_export  # noqa: E402
from kubehelpers import condition, eventually, servedmodel  # noqa: E402
from modelvolume import ModelVolume  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPORTER_UID = 10001  # the exporter image's user (constants.EXPORTER_USER)


@pytest.fixture
def volume() -> Iterator[ModelVolume]:
    """A host folder for a hostPath volume, outside pytest's private 0700 folders, owned by the exporter's
    user (hostPath volumes get no fsGroup ownership change)."""
    vol = ModelVolume.create(parent="/tmp", owner=EXPORTER_UID)
    try:
        yield vol
    finally:
        vol.remove()


def _export_record(kube, namespace, job_name, timeout=300):
    done = wait_export(
        kube,
        namespace,
        "iris",
        lambda r: r.get("jobName") == job_name and r.get("phase") in ("Succeeded", "Failed"),
        f"export {job_name} finished",
        timeout=timeout,
        interval=1,
    )
    return done["status"]["export"]


def _current_job(kube, namespace, previous=()):
    def new():
        job = export_record(kube, namespace, "iris").get("jobName")
        return job if job not in (None, *previous) else None

    return eventually(new, timeout=60, what="the export Job of the new spec")


def test_export_job_on_the_real_node(kube, operator, namespace, real_node, node_image, volume):
    image = node_image("exporter")
    incoming = volume.root / "incoming"
    incoming.mkdir(mode=0o755)
    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3)])
    model.save(incoming / "iris.keras")
    (incoming / "bad.keras").write_bytes(b"PK\x03\x04 not really a zip" * 8)
    for path in incoming.iterdir():
        path.chmod(0o644)
    kube.apply(volume.claim(namespace))

    def apply(export):
        kube.apply(
            servedmodel(
                "iris",
                namespace,
                replicas=0,  # no model server: this test is about the export Job
                **real_node.pod_placement(),
                export={"image": image, "imagePullPolicy": "Never", **export},
            )
        )

    # 1. A real export: the version, and the TensorFlow that wrote it, come back through the kubelet.
    apply({"source": {"path": "incoming/iris.keras"}})
    first = _current_job(kube, namespace)
    record = _export_record(kube, namespace, first)
    assert record["phase"] == "Succeeded", record
    assert record["version"] == 1 and record["message"] == "published version 1"
    assert record["tensorflowVersion"] == tf.__version__
    version = volume.root / "iris" / "1"
    assert (version / "saved_model.pb").is_file()
    for path in [version, *version.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    x = np.random.default_rng(5).standard_normal((2, 4)).astype("float32")
    (out,) = tf.saved_model.load(str(version)).signatures["serving_default"](features=tf.constant(x)).values()
    np.testing.assert_allclose(out.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)

    # 2. A corrupt source: exit code 3 fails the Job at once, although backoffLimit allows retries.
    apply({"source": {"path": "incoming/bad.keras"}, "backoffLimit": 3})
    second = _current_job(kube, namespace, (first,))
    record = _export_record(kube, namespace, second)
    assert record["phase"] == "Failed"
    assert "/volume/incoming/bad.keras is not a valid .keras archive" in record["message"], record
    job = kube.get("job", second, namespace)
    assert condition(job, "Failed")["reason"] == "PodFailurePolicy"
    assert len(job_pods(kube, namespace, second)) == 1

    # 3. The first source again, under a changed spec (a new Job): reported as version 1, not copied.
    apply({"source": {"path": "incoming/iris.keras"}, "keepVersions": 5})
    third = _current_job(kube, namespace, (first, second))
    record = _export_record(kube, namespace, third)
    assert record["phase"] == "Succeeded" and record["version"] == 1, record
    assert record["message"] == "version 1 was already published from this source (same sha256): nothing new"
    assert [name for name in volume.entries("iris") if not name.startswith(".")] == ["1"]
