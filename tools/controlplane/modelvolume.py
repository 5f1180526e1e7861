"""A model volume on the host for the test cluster and the demo: a folder a hostPath PersistentVolume
points at, the claim bound to it, and versions published into it from the host (the exporter, or a copy
renamed into place, as the exporter publishes: TF Serving never sees a half-written version)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def hostpath_claim(
    namespace: str,
    path: Path | str,
    claim: str = "models",
    reclaim: str = "Retain",
    path_type: str | None = "Directory",
    access_modes: Sequence[str] = ("ReadWriteMany",),
) -> str:
    """A PersistentVolume `<namespace>-<claim>` on the host folder `path` and the claim `claim` bound to it
    (pods with an unbound claim would never be scheduled), as YAML for `kubectl apply -f -`. `path_type`
    Directory makes the kubelet refuse a folder that does not exist; None takes any (kwok mounts nothing)."""
    host_path = f"{{path: {path}, type: {path_type}}}" if path_type else f"{{path: {path}}}"
    modes = f"[{', '.join(access_modes)}]"
    return f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {namespace}-{claim}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: {modes}
  persistentVolumeReclaimPolicy: {reclaim}
  hostPath: {host_path}
  claimRef: {{namespace: {namespace}, name: {claim}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {claim}, namespace: {namespace}}}
spec:
  accessModes: {modes}
  storageClassName: ""
  volumeName: {namespace}-{claim}
  resources: {{requests: {{storage: 1Gi}}}}
"""


@dataclass
class ModelVolume:
    """The host folder behind a hostPath model volume (`root`) and, beside it, a `library` of exported
    versions to copy in. `create` makes both world-traversable (the pods' users must reach the models)."""

    root: Path
    library: Path

    @classmethod
    def create(
        cls, parent: Path | str = "/srv", prefix: str = "servedmodel-volume-", owner: int | None = None
    ):
        """A new volume `<parent>/<prefix><random>/volume` (outside pytest's private 0700 folders); `owner`
        owns the root (hostPath volumes get no fsGroup ownership change, so a non-root writer needs it)."""
        Path(parent).mkdir(parents=True, exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        root, library = base / "volume", base / "library"
        root.mkdir()
        library.mkdir()
        for path in (base, root):
            path.chmod(0o755)
        if owner is not None:
            os.chown(root, owner, owner)
        return cls(root, library)

    @property
    def base(self) -> Path:
        return self.root.parent

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def claim(self, namespace: str, claim: str = "models") -> str:
        """The PersistentVolume on `root` and the claim bound to it in `namespace` (see `hostpath_claim`)."""
        return hostpath_claim(namespace, self.root, claim)

    def folder(self, model: str, owner: int | None = None) -> Path:
        path = self.root / model
        path.mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(path, owner, owner)
        return path

    def publish(self, source: Path, model: str, version: int | None = None, into: Path | None = None) -> Path:
        """Publish the Keras file or SavedModel `source` as `<model>/<version>/` (the next free version if
        None) with the exporter, from the host, as a user would from a machine that mounts the volume
        (into `root`, or `into`: e.g. the library). Returns the version's folder."""
        from servedmodel_exporter.cli import main as export

        base = into or self.root
        pinned = ["--version", str(version)] if version is not None else []
        code = export(
            ["publish", str(source), "--base-path", str(base), "--model", model, *pinned, "--quiet"]
        )
        if code != 0:
            raise RuntimeError(f"the exporter failed to publish {source} as {model}/{version} (exit {code})")
        if version is None:
            version = max(int(p.name) for p in (base / model).iterdir() if p.name.isdigit())
        return base / model / str(version)

    def publish_copy(self, model: str, variant: str, version: int) -> Path:
        """Put the library's `variant` (its version 1) at <model>/<version>/ atomically: a copy under a
        hidden name, then a rename."""
        folder = self.folder(model)
        staging = folder / f".staging-{uuid.uuid4().hex[:8]}"
        shutil.copytree(self.library / variant / "1", staging)
        target = folder / str(version)
        os.rename(staging, target)
        return target

    def entries(self, model: str) -> list[str]:
        """Every name in the model folder (versions, the exporter's lock file, anything left behind)."""
        folder = self.root / model
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def version_folders(self, model: str) -> list[str]:
        return sorted((name for name in self.entries(model) if name.isdigit()), key=int)
