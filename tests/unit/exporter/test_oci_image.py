"""The OCI image writer: reproducible digests, a layout that other tools read, the modelcar program.

Oracles are independent of the writer: sha256 of the files on disk, Python's tarfile/gzip reading the
layers, `umoci unpack` (the OCI reference tooling, Debian package) unpacking the layout, GNU `as`
assembling the modelcar source, and the program itself running in a chroot.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from servedmodel_exporter.errors import PublishError, UsageError
from servedmodel_exporter.oci import modelcar, modelimage, reference
from servedmodel_exporter.oci.registry import credentials

MODELCAR_SOURCE = Path(modelcar.__file__).with_name("modelcar.S")


def _version(root: Path, version: int, payload: bytes) -> Path:
    """A version folder shaped like the exporter's (files, a variables/ folder, the manifest)."""
    folder = root / "iris" / str(version)
    (folder / "variables").mkdir(parents=True)
    (folder / "assets.extra").mkdir()
    (folder / "saved_model.pb").write_bytes(b"graph-" + payload)
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(payload * 1000)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    manifest = {
        "source": {"sha256": hashlib.sha256(payload).hexdigest(), "uri": "x.keras", "kind": "keras"},
        "created_utc": "2026-01-01T00:00:00+00:00",
        "tensorflow_version": "2.21.0",
        "signatures": {
            "serving_default": {
                "method": "tensorflow/serving/predict",
                "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1, 4], "tensor": "x:0"}},
                "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [-1, 2], "tensor": "y:0"}},
            }
        },
    }
    (folder / "assets.extra" / "servedmodel-manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def models(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    _version(base, 1, b"one")
    _version(base, 2, b"two")
    return base


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _json(layout: Path, digest: str) -> dict:
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())


def test_same_versions_give_the_same_digest_whatever_the_files_times_and_modes(models: Path, tmp_path: Path):
    first = modelimage.build(models, "iris", tmp_path / "a")
    for path in (models / "iris").rglob("*"):
        os.utime(path, (time.time() + 1000, time.time() + 1000))
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    second = modelimage.build(models, "iris", tmp_path / "b")
    assert first.image.manifest.digest == second.image.manifest.digest
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()


def test_a_new_version_changes_the_digest_and_shares_the_older_layers(models: Path, tmp_path: Path):
    only_one = modelimage.build(models, "iris", tmp_path / "a", versions=[1])
    both = modelimage.build(models, "iris", tmp_path / "b")
    assert only_one.image.manifest.digest != both.image.manifest.digest
    assert [layer.digest for layer in both.image.layers[:2]] == [
        layer.digest for layer in only_one.image.layers
    ]
    assert len(both.image.layers) == 3  # modelcar, version 1, version 2
    assert both.versions == (1, 2)


def test_layout_blobs_match_their_digests_and_the_config_lists_the_layers(models: Path, tmp_path: Path):
    layout = tmp_path / "oci"
    built = modelimage.build(models, "iris", layout, ref_name="v1")
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    manifest_path = layout / "blobs" / "sha256" / entry["digest"].split(":")[1]
    assert _sha256(manifest_path) == entry["digest"] and manifest_path.stat().st_size == entry["size"]
    manifest = json.loads(manifest_path.read_bytes())
    config = _json(layout, manifest["config"]["digest"])
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"]["Entrypoint"] == ["/servedmodel/modelcar"]
    assert config["config"]["User"] == "65532"  # not root
    diff_ids = []
    for layer in manifest["layers"]:
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        blob = layout / "blobs" / "sha256" / layer["digest"].split(":")[1]
        assert _sha256(blob) == layer["digest"] and blob.stat().st_size == layer["size"]
        diff_ids.append("sha256:" + hashlib.sha256(gzip.decompress(blob.read_bytes())).hexdigest())
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    assert built.image.size == sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())


def test_layers_hold_sorted_root_owned_entries_with_fixed_modes_and_times(models: Path, tmp_path: Path):
    built = modelimage.build(models, "iris", tmp_path / "oci")
    version_layer = built.image.blob_path(built.image.layers[1].digest)
    with tarfile.open(version_layer) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert names[:3] == ["models", "models/iris", "models/iris/1"]
        assert "models/iris/1/variables/variables.index" in names
        for m in members:
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
            assert m.mode == (0o755 if m.isdir() else 0o644)
        data = tar.extractfile("models/iris/1/variables/variables.data-00000-of-00001").read()
    assert data == b"one" * 1000
    with tarfile.open(built.image.blob_path(built.image.layers[0].digest)) as tar:
        program = tar.getmember("servedmodel/modelcar")
        assert program.mode == 0o755 and tar.extractfile(program).read() == modelcar.executable()


def test_annotations_sum_up_each_version(models: Path, tmp_path: Path):
    built = modelimage.build(models, "iris", tmp_path / "oci")
    manifest = json.loads(built.image.blob_path(built.image.manifest.digest).read_bytes())
    notes = manifest["annotations"]
    assert notes["io.servedmodel.model"] == "iris"
    assert notes["io.servedmodel.versions"] == "1,2"
    assert notes["io.servedmodel.path"] == "/models/iris"
    summary = json.loads(notes["io.servedmodel.manifests"])
    assert summary["2"]["source_sha256"] == hashlib.sha256(b"two").hexdigest()
    assert summary["1"]["signatures"] == {
        "serving_default": {"inputs": {"x": "DT_FLOAT[-1, 4]"}, "outputs": {"y": "DT_FLOAT[-1, 2]"}}
    }
    config = json.loads(built.image.blob_path(built.image.config.digest).read_bytes())
    assert config["config"]["Labels"] == notes  # labels, for tools that show only the config


def test_umoci_unpacks_the_layout_into_the_model_files(models: Path, tmp_path: Path):
    assert shutil.which("umoci"), "umoci missing: run tools/dev/system-packages.sh"
    modelimage.build(models, "iris", tmp_path / "oci", ref_name="v1")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'oci'}:v1", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    for version in (1, 2):
        for rel in ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"):
            assert (rootfs / f"models/iris/{version}/{rel}").read_bytes() == (
                models / f"iris/{version}/{rel}"
            ).read_bytes()
    assert os.access(rootfs / "servedmodel/modelcar", os.X_OK)
    assert sorted(p.name for p in rootfs.iterdir()) == ["models", "servedmodel"]  # no OS layer
    runtime = json.loads((bundle / "config.json").read_text())
    assert runtime["process"]["args"] == ["/servedmodel/modelcar"]


def test_unknown_versions_symlinks_and_empty_folders_are_refused(models: Path, tmp_path: Path):
    with pytest.raises(UsageError, match=r"version\(s\) 7 of iris are not published .*published: 1, 2"):
        modelimage.build(models, "iris", tmp_path / "a", versions=[1, 7])
    with pytest.raises(UsageError, match="no published versions"):
        modelimage.build(models, "absent", tmp_path / "b")
    (models / "iris" / "2" / "link").symlink_to("/etc/passwd")
    with pytest.raises(PublishError, match="not a regular file"):
        modelimage.build(models, "iris", tmp_path / "c")


def test_modelcar_bytes_are_what_the_assembler_makes_of_the_source(tmp_path: Path):
    assert shutil.which("as") and shutil.which("objcopy"), (
        "binutils missing: run tools/dev/system-packages.sh"
    )
    subprocess.run(["as", "--64", "-o", str(tmp_path / "m.o"), str(MODELCAR_SOURCE)], check=True)
    subprocess.run(
        ["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "m.o"), str(tmp_path / "m.bin")], check=True
    )
    assert (tmp_path / "m.bin").read_bytes() == modelcar.CODE
    assert len(modelcar.executable()) < 300


def test_modelcar_links_its_root_into_the_shared_folder_and_waits(tmp_path: Path):
    """Run in a chroot (we are root in the tests) with the image's folders: the link it makes is
    /proc/<its pid>/root, and it keeps running until SIGTERM."""
    root = tmp_path / "root"
    (root / "servedmodel" / "link").mkdir(parents=True)
    program = root / "servedmodel" / "modelcar"
    program.write_bytes(modelcar.executable())
    program.chmod(0o755)
    (root / "servedmodel" / "link" / "root").symlink_to("/stale")  # a restarted container's old link
    proc = subprocess.Popen(["chroot", str(root), "/servedmodel/modelcar"])
    try:
        link = root / "servedmodel" / "link" / "root"
        deadline = time.monotonic() + 10
        while os.readlink(link) == "/stale" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.readlink(link) == f"/proc/{proc.pid}/root"
        assert proc.poll() is None
    finally:
        proc.terminate()
    assert proc.wait(10) == -15


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "loopback"),
    [
        ("127.0.0.1:5000/models/iris:3", "127.0.0.1:5000", "models/iris", "3", True),
        ("localhost:5000/iris", "localhost:5000", "iris", "latest", True),
        ("localhost/iris:1", "localhost", "iris", "1", True),
        ("registry.example/a/b:v1", "registry.example", "a/b", "v1", False),
        ("iris:2", "docker.io", "library/iris", "2", False),
        ("team/iris", "docker.io", "team/iris", "latest", False),
        ("[::1]:5000/iris:1", "[::1]:5000", "iris", "1", True),
    ],
)
def test_references_are_read_as_container_runtimes_read_them(text, registry, repository, tag, loopback):
    ref = reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.loopback) == (registry, repository, tag, loopback)


@pytest.mark.parametrize("text", ["Iris:1", "127.0.0.1:5000/iris:bad tag", "iris@sha256:abc", "/iris"])
def test_bad_references_are_refused_with_what_is_wrong(text):
    with pytest.raises(UsageError, match="image reference"):
        reference.parse(text)


def test_credentials_come_from_the_docker_config_auths(tmp_path: Path):
    import base64

    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "registry.example": {"auth": base64.b64encode(b"me:s3cret:x").decode()},
                    "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
                }
            }
        )
    )
    assert credentials("registry.example", config) == ("me", "s3cret:x")
    assert credentials("docker.io", config) == ("hub", "pw")
    assert credentials("other.example", config) is None
    assert credentials("x", tmp_path / "missing.json") is None
