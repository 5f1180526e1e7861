"""Packs files into a single-layer OCI image archive (an OCI image layout in a tar file), the format
`ctr images import` reads. Used for the test node's own small images (the pause image, CoreDNS, a busybox
test image), so the node needs neither an image registry nor an image builder for them.

The archive is reproducible: entries are sorted, owned by root and dated at the epoch, so the same inputs
give the same image digest.

    python3 ociimage.py --out pause.tar --ref localhost/servedmodel/pause:1 \
        --add /tmp/pause:/pause:0755 --entrypoint '["/pause"]'

Standard library only: the build script runs it with the system's python3.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.mode, info.size = kind, mode, size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def layer_tar(files: dict[str, tuple[bytes, int]], symlinks: dict[str, str], dirs: dict[str, int]) -> bytes:
    """An uncompressed layer: directories (parents made implicitly, mode 0755), files, symlinks."""
    all_dirs = dict(dirs)
    for path in [*files, *symlinks, *dirs]:
        parent = Path(path).parent
        while str(parent) not in ("/", "."):
            all_dirs.setdefault(str(parent), 0o755)
            parent = parent.parent
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(all_dirs):
            tar.addfile(_info(path, tarfile.DIRTYPE, all_dirs[path]))
        for path in sorted(files):
            data, mode = files[path]
            tar.addfile(_info(path, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
        for path in sorted(symlinks):
            info = _info(path, tarfile.SYMTYPE, 0o777)
            info.linkname = symlinks[path]
            tar.addfile(info)
    return buf.getvalue()


def write_archive(out: Path, ref: str, layer: bytes, config: dict) -> str:
    """Write the OCI layout tar to `out`; returns the manifest digest."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    layer_desc = blob(layer, LAYER)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created_by": "tools/controlplane/node/ociimage.py"}],
    }
    config_desc = blob(json.dumps(image_config, sort_keys=True).encode(), CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_desc, "layers": [layer_desc]}
    manifest_desc = blob(json.dumps(manifest, sort_keys=True).encode(), MANIFEST)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    entries = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
        **{f"blobs/sha256/{d.split(':', 1)[1]}": data for d, data in blobs.items()},
    }
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info("blobs", tarfile.DIRTYPE, 0o755))
        tar.addfile(_info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        for name in sorted(entries):
            data = entries[name]
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    tmp.replace(out)
    return manifest_desc["digest"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the archive to write")
    parser.add_argument("--ref", required=True, help="the image name stored in the archive")
    parser.add_argument("--add", action="append", default=[], metavar="SRC:DEST[:MODE]",
                        help="copy a file into the image (mode in octal, default 0755)")
    parser.add_argument("--symlink", action="append", default=[], metavar="DEST:TARGET")
    parser.add_argument("--dir", action="append", default=[], metavar="DEST[:MODE]",
                        help="an empty directory (mode in octal, default 0755)")
    parser.add_argument("--entrypoint", type=json.loads, help="JSON list")
    parser.add_argument("--cmd", type=json.loads, help="JSON list")
    parser.add_argument("--user", default="")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)

    files: dict[str, tuple[bytes, int]] = {}
    for spec in args.add:
        src, dest, *mode = spec.split(":")
        files[dest] = (Path(src).read_bytes(), int(mode[0], 8) if mode else 0o755)
    symlinks = dict(spec.split(":", 1) for spec in args.symlink)
    dirs = {}
    for spec in args.dir:
        dest, *mode = spec.split(":")
        dirs[dest] = int(mode[0], 8) if mode else 0o755
    config: dict = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env]}
    if args.entrypoint:
        config["Entrypoint"] = args.entrypoint
    if args.cmd:
        config["Cmd"] = args.cmd
    if args.user:
        config["User"] = args.user
    digest = write_archive(args.out, args.ref, layer_tar(files, symlinks, dirs), config)
    print(f"{args.ref} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
