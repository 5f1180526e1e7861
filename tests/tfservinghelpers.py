"""The kubelet's part around a TF Serving test double: the ServedModel's config file and its model volume.

No kubelet runs the model server here (tools/tfserving_double plays TF Serving on loopback), so tests copy
the operator's ConfigMap into the double's config file and publish version folders themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubehelpers import eventually


class ConfigSync:
    """Copies models.config from the ConfigMap into the double's config file, as the kubelet would."""

    def __init__(self, kube, namespace: str, name: str, volume: Path, target: Path):
        self.kube, self.namespace, self.name, self.volume, self.target = kube, namespace, name, volume, target
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sync_once(self) -> bool:
        cm = self.kube.get("configmap", f"{self.name}-config", self.namespace)
        if cm is None:
            return False
        text = cm["data"]["models.config"].replace('base_path: "/models', f'base_path: "{self.volume}')
        if not self.target.exists() or self.target.read_text() != text:
            self.target.write_text(text)
        return True

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sync_once()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def publish(volume: Path, model: str, version: int, complete: bool = True) -> None:
    folder = volume / model / str(version)
    folder.mkdir(parents=True)
    if complete:  # the double loads a version whose saved_model.pb exists; without it the load fails
        (folder / "saved_model.pb").write_bytes(b"\x08\x01")


@contextmanager
def model_server_double(
    kube, namespace: str, name: str, volume: Path, config: Path, grpc: int, rest: int, **options: Any
) -> Iterator[Any]:
    """ServedModel `name`'s model server as a kubelet would run it: the TF Serving double on loopback ports
    `grpc` and `rest`, reading `config` (kept in sync with the operator's ConfigMap, which must appear) and
    `volume` (for /models); polling each second, no load retries. `options` go to the double."""
    from tfserving_double import TFServingDouble

    with ConfigSync(kube, namespace, name, volume, config) as sync:
        eventually(sync.sync_once, what="ConfigMap rendered")
        settings = {
            "model_config_file_poll_wait_seconds": 1,
            "file_system_poll_wait_seconds": 1,
            "max_num_load_retries": 0,
            **options,
        }
        with TFServingDouble(
            model_config_file=str(config), port=grpc, rest_api_port=rest, **settings
        ) as double:
            yield double
