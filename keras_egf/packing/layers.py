"""`PackedDense`: the Dense layers of K models (a pack's members) in one."""

import keras
from keras import ops

from keras_egf import validation


@keras.saving.register_keras_serializable(package="keras_egf")
class PackedDense(keras.layers.Layer):
    """K Dense layers in one, for inputs of shape (batch, K, fan_in).

    Weights: `kernel` (K, fan_in, units), `bias` (K, units) unless
    `use_bias=False`, and two non-trainable 0/1 arrays of the kernel's
    shape: `mask` (pruning and structure: where the member has a weight it
    keeps) and `structure` (the member's own kernel shape within the padded
    one). One batched matmul (einsum) computes every member's outputs,
    (batch, K, units). Pruned and padded kernel entries are 0 (the packed
    trainer masks their gradients), so the kernel is its own effective
    kernel.

    Args:
        members: K, the models packed.
        units: output units of every member (the widest member's; the
            others are padded).
        use_bias: whether the layer has a bias.
        kernel_regularizer: the members' kernel regularizer (a pack's
            members share it), applied to each member's kernel apart by
            `member_penalties`; it is not added to `self.losses`, since a
            pack's objective is per member.
    """

    def __init__(self, members, units, use_bias=True, kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.members = validation.positive_int("members", members)
        self.units = validation.positive_int("units", units)
        self.use_bias = bool(use_bias)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] != self.members:
            validation.fail("input_shape", f"(batch, members={self.members}, "
                            "fan_in)", tuple(input_shape))
        shape = (self.members, int(input_shape[-1]), self.units)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="zeros")
        self.bias = (self.add_weight(name="bias", shape=shape[::2], initializer="zeros")
                     if self.use_bias else None)
        self.mask = self.add_weight(name="mask", shape=shape, initializer="zeros",
                                    trainable=False)
        self.structure = self.add_weight(name="structure", shape=shape,
                                         initializer="zeros", trainable=False)

    def call(self, inputs):
        outputs = ops.einsum("bki,kio->bko", inputs, self.kernel)
        return outputs + self.bias if self.use_bias else outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def member_penalties(self):
        """The regularizer's penalty on each member's kernel, a vector (K,)
        (zeros without a regularizer)."""
        if self.kernel_regularizer is None:
            return ops.zeros((self.members,), self.kernel.dtype)
        return ops.vectorized_map(self.kernel_regularizer, self.kernel)

    def get_config(self):
        config = super().get_config()
        config.update(
            members=self.members, units=self.units, use_bias=self.use_bias,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer))
        return config
