"""A small Keras model with fixed weights in two variants ('a' and 'b': versions 1 and 2 of one model),
for tests that publish it, serve it and compare the answers with what Keras itself computes."""

from __future__ import annotations

from typing import Any

import numpy as np


def fixed_model(variant: str) -> Any:
    """features (4 floats) -> scores (3 floats) through one Dense layer whose weights depend on `variant`."""
    import keras

    inputs = keras.Input(shape=(4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, name="scores")(inputs))
    kernel = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    bias = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    if variant == "b":
        kernel, bias = 1 - kernel, -bias
    model.get_layer("scores").set_weights([kernel, bias])
    return model
