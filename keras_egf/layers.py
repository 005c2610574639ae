"""Masked Keras 3 layers: Dense and Conv2D with a fixed 0/1 kernel mask.

Each layer owns a non-trainable ``mask`` variable of the kernel's shape. The
forward pass uses the effective kernel ``kernel * mask``. Setting a mask
(``set_mask``) also zeroes the pruned kernel entries, so that the kernel
variable itself is exactly 0 wherever the mask is 0; `keras_egf.MaskedModel`
keeps it so during training by masking the kernels' gradients.

Inside `effective_kernel_gradients()` (entered by `MaskedModel.train_step`) the
mask product has a straight-through gradient: autodiff's gradient with respect
to the kernel variable is then the gradient with respect to the effective
kernel, g = dC/d(kernel * mask), which is in general non-zero at pruned
positions (docs/method.md §2). Outside that context the gradient is the
ordinary, masked one, so the layers are also safe in a plain `keras.Model`.
"""

import contextlib
import threading

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# Modes of the forward mask product, chosen by `effective_kernel_gradients`.
MASK_PRODUCT_AUTODIFF = "autodiff"  # kernel * mask, gradient masked.
MASK_PRODUCT_STRAIGHT_THROUGH = "straight_through"  # kernel * mask, grad g.
MASK_PRODUCT_IDENTITY = "identity"  # kernel (== kernel * mask), grad g.
MASK_PRODUCT_MODES = (
    MASK_PRODUCT_AUTODIFF,
    MASK_PRODUCT_STRAIGHT_THROUGH,
    MASK_PRODUCT_IDENTITY,
)

# Storage of the mask variable: one byte an entry by default (a quarter of a
# float32 kernel's bytes), cast to the kernel's dtype where it is used.
MASK_DTYPES = ("int8", "float32")
DEFAULT_MASK_DTYPE = "int8"

_state = threading.local()


def current_mask_product_mode():
    """Returns the mask-product mode in force in this thread."""
    return getattr(_state, "mode", MASK_PRODUCT_AUTODIFF)


@contextlib.contextmanager
def effective_kernel_gradients(mode=MASK_PRODUCT_STRAIGHT_THROUGH):
    """Makes masked layers give the unmasked effective-kernel gradient.

    Args:
        mode: `"straight_through"`: the forward pass computes kernel * mask and
            the backward pass hands the kernel the gradient with respect to
            that product, unmasked. `"identity"`: the forward pass reads the
            kernel as is, which equals kernel * mask as long as pruned kernel
            entries are 0 (what `set_mask` and `MaskedModel` guarantee); it
            saves one elementwise product per layer and step.
    """
    if mode not in MASK_PRODUCT_MODES:
        raise ValueError(
            f"Unknown mask product mode. Expected one of {MASK_PRODUCT_MODES}. "
            f"Received: mode={mode!r}"
        )
    previous = current_mask_product_mode()
    _state.mode = mode
    try:
        yield
    finally:
        _state.mode = previous


@tf.custom_gradient
def _straight_through_product(kernel, mask):
    def grad(upstream):
        return upstream, tf.zeros_like(mask)

    return kernel * mask, grad


class MaskedKernelMixin:
    """Mask variable, effective kernel and mask setting shared by layers."""

    def _set_mask_dtype(self, mask_dtype):
        if mask_dtype not in MASK_DTYPES:
            raise ValueError(
                f"Unknown mask dtype. Expected one of {MASK_DTYPES}. "
                f"Received: mask_dtype={mask_dtype!r}"
            )
        self.mask_dtype = mask_dtype

    def _build_mask(self):
        self.mask = self.add_weight(
            name="mask",
            shape=tuple(self.kernel.shape),
            initializer="ones",
            trainable=False,
            dtype=self.mask_dtype,
        )

    def _mask_config(self, config):
        config["mask_dtype"] = self.mask_dtype
        return config

    def _check_plain_kernel(self, kwargs):
        for name in ("lora_rank", "quantization_config"):
            if kwargs.get(name) is not None:
                raise ValueError(
                    f"{type(self).__name__} does not support `{name}`. "
                    f"Received: {name}={kwargs[name]!r}"
                )

    def effective_kernel(self):
        """Returns the kernel used in the forward pass, kernel * mask."""
        mode = current_mask_product_mode()
        if mode == MASK_PRODUCT_IDENTITY:
            return self.kernel
        kernel = tf.convert_to_tensor(self.kernel)  # autocast inside call
        mask = tf.cast(self.mask, kernel.dtype)
        if mode == MASK_PRODUCT_STRAIGHT_THROUGH:
            return _straight_through_product(kernel, mask)
        return ops.multiply(kernel, mask)

    def set_mask(self, mask):
        """Sets the 0/1 mask and zeroes the pruned kernel entries."""
        if not self.built:
            raise ValueError(
                f"Layer {self.name!r} must be built before setting its mask."
            )
        mask = np.asarray(ops.convert_to_numpy(mask))
        expected = tuple(self.kernel.shape)
        if mask.shape != expected:
            raise ValueError(
                f"Mask for layer {self.name!r} must have the kernel's shape "
                f"{expected}. Received: mask.shape={mask.shape}"
            )
        bad = ~np.isin(mask, (0, 1))
        if bad.any():
            raise ValueError(
                f"Mask for layer {self.name!r} must hold only 0 and 1. "
                f"Received a value {mask[bad].flat[0]!r}"
            )
        mask = mask.astype(self.mask.dtype)
        self.mask.assign(mask)
        self.kernel.assign(ops.convert_to_numpy(self.kernel) * mask)

    def apply_mask_to_kernel(self):
        """Zeroes kernel entries where the mask is 0 (one variable write)."""
        self.kernel.assign(
            ops.multiply(self.kernel, ops.cast(self.mask, self.kernel.dtype)))

    @property
    def active_weights(self):
        """Number of kernel entries whose mask is 1."""
        return int(np.sum(ops.convert_to_numpy(self.mask)))

    @property
    def sparsity(self):
        """Fraction of kernel entries pruned (mask 0)."""
        total = int(np.prod(self.kernel.shape))
        return 1.0 - self.active_weights / total

    # Dense and Conv2D save their variables through a quantization-aware
    # spec that knows nothing of the mask: use the plain Layer behaviour,
    # which saves every variable (kernel, bias, mask) in order.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def quantize(self, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} cannot be quantized."
        )


@keras.saving.register_keras_serializable(package="keras_egf")
class MaskedDense(MaskedKernelMixin, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is multiplied by a fixed 0/1 mask.

    Takes the same arguments as `keras.layers.Dense` (LoRA and quantization
    excepted), plus `mask_dtype`: how the mask variable is stored, `"int8"`
    (default, one byte an entry) or `"float32"`; either way it is cast to the
    kernel's dtype where it is used, so results do not depend on it. The mask
    starts all ones; set it with `set_mask` or `keras_egf.apply_masks`.
    """

    def __init__(self, units, mask_dtype=DEFAULT_MASK_DTYPE, **kwargs):
        self._check_plain_kernel(kwargs)
        self._set_mask_dtype(mask_dtype)
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(
                "Received an invalid value for `units`, expected a positive "
                f"integer. Received: units={units!r}"
            )
        super().__init__(units, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_mask()

    def get_config(self):
        return self._mask_config(super().get_config())

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, self.effective_kernel())
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


@keras.saving.register_keras_serializable(package="keras_egf")
class MaskedConv2D(MaskedKernelMixin, keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose kernel is multiplied by a fixed 0/1 mask.

    Takes the same arguments as `keras.layers.Conv2D` (LoRA excepted), plus
    `mask_dtype` as in `MaskedDense`.
    """

    def __init__(self, filters, kernel_size, mask_dtype=DEFAULT_MASK_DTYPE,
                 **kwargs):
        self._check_plain_kernel(kwargs)
        self._set_mask_dtype(mask_dtype)
        if not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(
                "Received an invalid value for `filters`, expected a positive "
                f"integer. Received: filters={filters!r}"
            )
        super().__init__(filters, kernel_size, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_mask()

    def get_config(self):
        return self._mask_config(super().get_config())

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.effective_kernel())
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (self.filters,)
            else:
                bias_shape = (1, self.filters) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


def plain_config(layer):
    """`layer.get_config()` less the mask options: a config the plain
    Keras layer (Dense, Conv2D) accepts."""
    config = layer.get_config()
    config.pop("mask_dtype", None)
    return config


def is_masked_layer(layer):
    """True for layers that own a kernel mask."""
    return isinstance(layer, MaskedKernelMixin)


def prunable_layers(model):
    """The layers whose kernels gradient flow is measured on, in order.

    Masked layers, plus plain `keras.layers.Dense` / `Conv2D` (and their
    subclasses), whose mask is taken as all ones.
    """
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if is_masked_layer(layer) or isinstance(
            layer, (keras.layers.Dense, keras.layers.Conv2D)
        ):
            found.append(layer)
    return found
