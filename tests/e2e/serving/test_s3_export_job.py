"""spec.export into S3 on the real node: the export Job (the exporter image) downloads a .keras file by URL,
publishes it into the bucket with the access key from the ServedModel's Secret, and the pods' sync sidecars
serve the new version; answers equal Keras'."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator

import pytest
from exportjobs import wait_export
from servinghelpers import (
    INPUTS,
    NAMESPACE,
    assert_close,
    cluster_ip,
    predict,
    versions,
    wait_ready,
)

NAME = "s3-exported"
WRITER = "s3-writer"  # an export Job writes: the Secret holds the store's read-write identity


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def source_url(node, keras_models) -> Iterator[str]:
    """The model 'a' .keras file over HTTP on the node's host-side address, which pods reach."""
    folder = keras_models.files["a"].parent
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer((node.slot.host_ip, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}/{keras_models.files['a'].name}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_export_job_publishes_into_the_bucket_and_the_pods_serve_it(
    skube, node, stand_in, exporter_image, serving_operator, keras_models, s3, source_url, cleanup
) -> None:
    skube.apply(s3.secret(WRITER, s3.access_key, s3.secret_key))
    body = s3.servedmodel(NAME, stand_in, exporter_image, secret=WRITER)
    body["spec"]["export"] = {
        "source": {"url": source_url},
        "image": exporter_image,
        "imagePullPolicy": "Never",
        "backoffLimit": 0,
    }
    skube.apply(body)
    cleanup.append((NAMESPACE, NAME))
    sm = wait_export(
        skube,
        NAMESPACE,
        NAME,
        lambda record: record.get("phase") in ("Succeeded", "Failed"),
        "the export Job to finish",
        timeout=300,
    )
    record = sm["status"]["export"]
    assert record["phase"] == "Succeeded" and record["version"] == 1, record
    assert s3.uncommitted(NAME) == []
    sm = wait_ready(skube, NAMESPACE, NAME, timeout=300)
    assert versions(sm) == [{"version": 1, "state": "AVAILABLE"}]
    base = f"http://{cluster_ip(skube, NAMESPACE, NAME)}:8501/v1/models/{NAME}"
    assert_close(predict(node, base), keras_models.predict("a", INPUTS), "version 1 published by the Job")
