"""SReLU, the S-shaped rectified linear unit (Jin et al. 2016), as a layer.

f(x) = t_r + a_r (x - t_r)   for x >= t_r
       x                     for t_l < x < t_r
       t_l + a_l (x - t_l)   for x <= t_l
with t_l, a_l, t_r, a_r learnable per unit (the last axis). As in
keras-contrib, the right threshold is parametrised as t_r = t_l + |d_r| so
that it never falls below t_l; `t_right_initializer` initialises d_r.
Defaults start as a leaky ReLU-like unit: t_l = 0, a_l = 0.2, d_r = 1,
a_r = 1.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_egf")
class SReLU(keras.layers.Layer):
    """S-shaped ReLU with four learnable parameters per unit."""

    def __init__(
        self,
        t_left_initializer="zeros",
        a_left_initializer=keras.initializers.Constant(0.2),
        t_right_initializer="ones",
        a_right_initializer="ones",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.t_left_initializer = keras.initializers.get(t_left_initializer)
        self.a_left_initializer = keras.initializers.get(a_left_initializer)
        self.t_right_initializer = keras.initializers.get(t_right_initializer)
        self.a_right_initializer = keras.initializers.get(a_right_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        units = input_shape[-1]
        if units is None:
            raise ValueError(
                "SReLU needs a known last dimension. "
                f"Received: input_shape={input_shape}"
            )
        shape = (units,)
        self.t_left = self.add_weight(
            name="t_left", shape=shape, initializer=self.t_left_initializer)
        self.a_left = self.add_weight(
            name="a_left", shape=shape, initializer=self.a_left_initializer)
        self.t_right = self.add_weight(
            name="t_right", shape=shape, initializer=self.t_right_initializer)
        self.a_right = self.add_weight(
            name="a_right", shape=shape, initializer=self.a_right_initializer)

    def call(self, inputs):
        t_l = self.t_left
        t_r = t_l + ops.abs(self.t_right)
        right = t_r + self.a_right * (inputs - t_r)
        left = t_l + self.a_left * (inputs - t_l)
        return ops.where(
            inputs >= t_r, right, ops.where(inputs <= t_l, left, inputs)
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        for name in ("t_left", "a_left", "t_right", "a_right"):
            config[f"{name}_initializer"] = keras.initializers.serialize(
                getattr(self, f"{name}_initializer")
            )
        return config
