"""Fixtures for the TF Serving double's tests: temp model folders and in-process doubles on 127.0.0.1.

The plain helpers are importable as ``tfsd_helpers`` (registered below): several folders have a
``conftest.py``, so ``from conftest import ...`` could pick another folder's module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[3]
DOUBLE_DIR = ROOT / "tools" / "tfserving_double"
if str(DOUBLE_DIR) not in sys.path:  # also works without PYTHONPATH (e.g. `make test-unit`)
    sys.path.insert(0, str(DOUBLE_DIR))

from tfserving_double import TFServingDouble  # noqa: E402

sys.modules.setdefault("tfsd_helpers", sys.modules[__name__])

FAST_POLL = 0.2  # seconds between file-system polls in tests (the real default is 1 s)


def add_version(base: Path, version: int | str, loadable: bool = True) -> Path:
    """Create ``<base>/<version>/`` with a placeholder ``saved_model.pb`` (or without, to make it fail)."""
    d = base / str(version)
    d.mkdir(parents=True, exist_ok=True)
    if loadable:
        (d / "saved_model.pb").write_bytes(b"not a real SavedModel")
    return d


def model_config(*models: dict) -> str:
    """Text ModelServerConfig for dicts with name/base_path and optional policy/labels text."""
    parts = []
    for m in models:
        extra = m.get("extra", "")
        parts.append(
            f'  config {{\n    name: "{m["name"]}"\n    base_path: "{m["base_path"]}"\n'
            f'    model_platform: "tensorflow"\n{extra}  }}\n'
        )
    return "model_config_list {\n" + "".join(parts) + "}\n"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets LISTENing on ``port``, read from /proc (no packet is sent)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                text = socket.inet_ntop(socket.AF_INET6, words)
                found.add(text.removeprefix("::ffff:"))  # an IPv4-mapped listener (gRPC's) is that IPv4
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed (every wait in these tests is bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """An empty model base path ``<tmp>/models/m``."""
    p = tmp_path / "models" / "m"
    p.mkdir(parents=True)
    return p


def _double(**kwargs: object) -> TFServingDouble:
    """A double with fast polling and no load retries, unless `kwargs` say otherwise."""
    kwargs.setdefault("file_system_poll_wait_seconds", FAST_POLL)
    kwargs.setdefault("max_num_load_retries", 0)
    return TFServingDouble(**kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def _running(timeout: float, **kwargs: object) -> Iterator[TFServingDouble]:
    """A started double (as `_double`), stopped after."""
    d = _double(**kwargs)
    try:
        yield d.start(timeout=timeout)
    finally:
        d.stop()


@pytest.fixture
def make_double() -> Iterator[Callable[..., TFServingDouble]]:
    """Factory for doubles (fast polling, no load retries by default); all are stopped at teardown."""
    created: list[TFServingDouble] = []

    def factory(**kwargs: object) -> TFServingDouble:
        d = _double(**kwargs)
        created.append(d)
        return d

    yield factory
    for d in created:
        d.stop()


@pytest.fixture
def served(make_double: Callable[..., TFServingDouble], base: Path) -> TFServingDouble:
    """A started double serving model ``m`` with version 1 from ``base``."""
    add_version(base, 1)
    return make_double(model_name="m", model_base_path=str(base)).start(timeout=30)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TFServingDouble]:
    """Like ``served`` but one per test module, for tests that only read (saves a start/stop per test)."""
    base = tmp_path_factory.mktemp("shared") / "m"
    add_version(base, 1)
    with _running(30, model_name="m", model_base_path=str(base)) as d:
        yield d


@dataclasses.dataclass
class KerasVersions:
    """Model ``ranker``: versions 1 and 2 are two Keras models of one architecture with different weights.

    Input ``features`` float [None, 4]; outputs ``probs`` (softmax, [None, 3]) and ``score`` ([None, 1]).
    ``keras[v]`` is the Keras model exported as version ``v``, the oracle for the served answers.
    """

    base: Path
    keras: dict[int, Any]

    def expected(self, version: int, x: Any) -> dict[str, Any]:
        out = self.keras[version](x, training=False)
        return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="session")
def keras_versions(tmp_path_factory: pytest.TempPathFactory) -> KerasVersions:
    """Built and exported once per session (a few seconds): every test that compares with Keras shares it."""
    import keras

    base = tmp_path_factory.mktemp("keras") / "ranker"
    models = {}
    for version in (1, 2):
        keras.utils.set_random_seed(version)
        features = keras.Input(shape=(4,), name="features")
        hidden = keras.layers.Dense(8, activation="relu")(features)
        outputs = {
            "probs": keras.layers.Dense(3, activation="softmax", name="probs")(hidden),
            "score": keras.layers.Dense(1, name="score")(hidden),
        }
        model = keras.Model(features, outputs)
        model.export(str(base / str(version)), format="tf_saved_model", verbose=False)
        models[version] = model
    return KerasVersions(base, models)


@pytest.fixture(scope="session")
def examples_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF1-style SavedModel (version 1 of model ``examples``) with three signatures over fixed math:

    * ``serving_default`` (predict): ``text`` string [None] -> ``upper`` (text), ``raw_bytes`` (text + "!",
      a ``_bytes`` alias) and ``length`` (int32);
    * ``classify``: serialized tf.Examples with float feature ``x`` -> ``classes`` ["pos", "neg"] and
      ``scores`` [sigmoid(x), 1 - sigmoid(x)];
    * ``regress``: the same examples -> ``outputs`` 0.5 * x + 2.
    """
    import tensorflow as tf

    base = tmp_path_factory.mktemp("tf1") / "examples"
    graph = tf.Graph()
    with graph.as_default():
        examples = tf.compat.v1.placeholder(tf.string, [None], name="tf_example")
        x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        scores = tf.concat([tf.sigmoid(x), 1 - tf.sigmoid(x)], axis=1)
        classes = tf.tile(tf.constant([["pos", "neg"]]), [tf.shape(x)[0], 1])
        text = tf.compat.v1.placeholder(tf.string, [None], name="text")
        sigs = tf.compat.v1.saved_model.signature_def_utils
        signature_defs = {
            "serving_default": sigs.predict_signature_def(
                inputs={"text": text},
                outputs={
                    "upper": tf.strings.upper(text),
                    "raw_bytes": tf.strings.join([text, "!"]),
                    "length": tf.strings.length(text),
                },
            ),
            "classify": sigs.classification_signature_def(examples, classes, scores),
            "regress": sigs.regression_signature_def(examples, 0.5 * x + 2.0),
        }
        with tf.compat.v1.Session(graph=graph) as sess:
            builder = tf.compat.v1.saved_model.Builder(str(base / "1"))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signature_defs)
            builder.save()
    return base


@pytest.fixture(scope="module")
def tf_double(
    keras_versions: KerasVersions, examples_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TFServingDouble]:
    """A double (one per test module) serving ``ranker`` (policy all, label stable -> 1) and ``examples``."""
    cfg = tmp_path_factory.mktemp("cfg") / "models.config"
    cfg.write_text(
        model_config(
            {
                "name": "ranker",
                "base_path": keras_versions.base,
                "extra": "    model_version_policy { all {} }\n"
                '    version_labels { key: "stable" value: 1 }\n',
            },
            {"name": "examples", "base_path": examples_model},
        )
    )
    with _running(120, model_config_file=str(cfg), allow_version_labels_for_unavailable_models=True) as d:
        yield d
