"""Load a source model and write it as a SavedModel; give the source's outputs as the parity reference."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .errors import PublishError, SourceError, VerificationError
from .sources import Source, check_file_format, refuse_symlinks

Outputs = dict[str, np.ndarray]
Predict = Callable[[Mapping[str, np.ndarray]], Outputs]


def tensorflow_version() -> str:
    return tf.__version__


def load_keras(source: Source) -> keras.Model:
    """Load a ``.keras`` or legacy ``.h5`` file; ``safe_mode`` stays on: a file cannot run arbitrary code."""
    check_file_format(Path(source.path), source.kind, source.uri)
    try:
        return keras.saving.load_model(source.path, compile=False)
    except Exception as exc:  # Keras raises many unrelated types for corrupt or truncated files
        raise SourceError(f"cannot load Keras model from {source.uri}: {type(exc).__name__}: {exc}") from exc


def export_keras(model: keras.Model, destination: Path) -> None:
    """Keras 3 export, which writes a ``serving_default`` signature; its chatter goes to stderr."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            model.export(str(destination), format="tf_saved_model", verbose=False)
    except OSError as exc:
        raise PublishError(f"cannot write SavedModel to {destination}: {exc.strerror or exc}") from exc
    except Exception as exc:  # tracing errors: model without known input shapes, unsupported layers...
        raise SourceError(
            f"cannot export the Keras model as a SavedModel: {type(exc).__name__}: {exc}"
        ) from exc


def copy_saved_model(source: Source, destination: Path) -> None:
    refuse_symlinks(Path(source.path))
    try:
        shutil.copytree(source.path, destination, dirs_exist_ok=True)
    except (OSError, shutil.Error) as exc:
        raise PublishError(f"cannot copy SavedModel {source.path} to {destination}: {exc}") from exc


def keras_predict(model: keras.Model) -> Predict:
    """Call the model the way its exported signature is called and name outputs as the export does."""

    def predict(inputs: Mapping[str, np.ndarray]) -> Outputs:
        args = next(iter(inputs.values())) if len(model.inputs) == 1 else dict(inputs)
        return _name_outputs(model(args, training=False))

    return predict


def signature_predict(function: tf.types.experimental.ConcreteFunction) -> Predict:
    def predict(inputs: Mapping[str, np.ndarray]) -> Outputs:
        try:
            outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
        except (tf.errors.OpError, TypeError, ValueError) as exc:
            raise VerificationError(f"running the signature on sample inputs failed: {exc}") from exc
        return {name: np.asarray(value) for name, value in outputs.items()}

    return predict


def load_signature(path: Path, signature: str) -> tuple[object, tf.types.experimental.ConcreteFunction]:
    """Load a SavedModel and return (loaded object, signature); the object must outlive the function."""
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TF raises OpError, ValueError, OSError... for broken SavedModels
        raise VerificationError(f"SavedModel at {path} does not load: {type(exc).__name__}: {exc}") from exc
    if signature not in loaded.signatures:
        raise VerificationError(
            f"SavedModel at {path} has no signature {signature!r}; it has {sorted(loaded.signatures)}"
        )
    return loaded, loaded.signatures[signature]


def load_source_signature(
    source: Source, signature: str
) -> tuple[object, tf.types.experimental.ConcreteFunction]:
    """The signature of a SavedModel source; its failures are the source's fault, not the export's."""
    try:
        return load_signature(source.path, signature)
    except VerificationError as exc:
        raise SourceError(str(exc)) from exc


def input_specs(function: tf.types.experimental.ConcreteFunction) -> dict[str, tf.TensorSpec]:
    args, kwargs = function.structured_input_signature
    if args:
        raise VerificationError("signature takes positional inputs; TF Serving needs named inputs")
    return dict(kwargs)


def _name_outputs(outputs: object) -> Outputs:
    if isinstance(outputs, Mapping):
        return {str(name): np.asarray(value) for name, value in outputs.items()}
    flat = tf.nest.flatten(outputs)
    return {f"output_{i}": np.asarray(value) for i, value in enumerate(flat)}
