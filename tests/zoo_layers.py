"""A user's module that registers a custom layer (the zoo's ``custom``
model): ``tfcompress convert model.keras --import zoo_layers ...``.

Importing it registers ``ChannelScale`` with every Keras generation that is
importable (Keras 3 ``keras`` and Keras 2 ``tf_keras``).
"""

from __future__ import annotations

import importlib

__all__ = ["ChannelScale", "define"]


def define(keras):
    """``ChannelScale`` for ``keras`` (Keras 3 or tf_keras), registered
    under the package ``tfczoo``."""
    register = keras.saving.register_keras_serializable

    @register(package="tfczoo")
    class ChannelScale(keras.layers.Layer):
        """``x * scale + shift`` with one learned scale/shift per channel."""

        def build(self, input_shape):
            self.scale = self.add_weight(
                name="scale", shape=(input_shape[-1],), initializer="ones")
            self.shift = self.add_weight(
                name="shift", shape=(input_shape[-1],), initializer="zeros")
            super().build(input_shape)

        def call(self, inputs):
            return inputs * self.scale + self.shift

    return ChannelScale


ChannelScale = {}
for _name in ("keras", "tf_keras"):
    try:
        _keras = importlib.import_module(_name)
    except ImportError:  # pragma: no cover - a generation not installed
        continue
    ChannelScale[_name] = define(_keras)
