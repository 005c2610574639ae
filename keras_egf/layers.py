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
import reprlib
import threading

import keras
import numpy as np
from keras import ops

from keras_egf import prunable as prunable_lib
from keras_egf import validation
from keras_egf.pruning_options import (  # noqa: F401
    DEFAULT_MASK_DTYPE,
    MASK_DTYPES,
    PRUNING_OPTIONS,
    PruningOptionsMixin,
)

# Modes of the forward mask product, chosen by `effective_kernel_gradients`.
MASK_PRODUCT_AUTODIFF = "autodiff"  # kernel * mask, gradient masked.
MASK_PRODUCT_STRAIGHT_THROUGH = "straight_through"  # kernel * mask, grad g.
MASK_PRODUCT_IDENTITY = "identity"  # kernel (== kernel * mask), grad g.
MASK_PRODUCT_MODES = (
    MASK_PRODUCT_AUTODIFF,
    MASK_PRODUCT_STRAIGHT_THROUGH,
    MASK_PRODUCT_IDENTITY,
)


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
    validation.one_of("mode", mode, MASK_PRODUCT_MODES)
    previous = current_mask_product_mode()
    _state.mode = mode
    try:
        yield
    finally:
        _state.mode = previous


def mask_product(value, mask, mode):
    """`value * mask` (`mask` cast to `value`'s dtype), in keras.ops.

    `mode` "straight_through": the forward value is exactly value * mask
    (value + (value * mask - value) is value or +0.0), the backward pass
    hands `value` the unmasked gradient with respect to that product;
    "autodiff": the plain product, whose gradient is masked.
    """
    mask = ops.cast(mask, value.dtype)
    if mode == MASK_PRODUCT_STRAIGHT_THROUGH:
        return value + ops.stop_gradient(value * mask - value)
    return value * mask


class MaskedKernelMixin(PruningOptionsMixin):
    """Mask variable, effective kernel and mask setting shared by layers."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_mask()

    def get_config(self):
        return self._pruning_config(super().get_config())

    def _build_mask(self):
        self._check_block_rank([self.kernel])
        self.mask = self.add_weight(
            name="mask",
            shape=tuple(self.kernel.shape),
            initializer="ones",
            trainable=False,
            dtype=self.mask_dtype,
        )

    def effective_kernel(self):
        """Returns the kernel used in the forward pass, kernel * mask."""
        mode = current_mask_product_mode()
        if mode == MASK_PRODUCT_IDENTITY:
            return self.kernel
        kernel = ops.convert_to_tensor(self.kernel)  # autocast inside call
        return mask_product(kernel, self.mask, mode)

    def set_mask(self, mask):
        """Sets the 0/1 mask and zeroes the pruned kernel entries."""
        if not self.built:
            raise ValueError(
                f"Layer {self.name!r} must be built before setting its mask."
            )
        mask = _checked_mask(f"layer {self.name!r}", "kernel", mask,
                             tuple(self.kernel.shape))
        mask = mask.astype(self.mask.dtype)
        self.mask.assign(mask)
        self.kernel.assign(zero_where_pruned(self.kernel, mask))

    def apply_mask_to_kernel(self):
        """Zeroes kernel entries where the mask is 0 (one variable write)."""
        self.kernel.assign(zero_where_pruned(self.kernel, self.mask))

    @property
    def active_weights(self):
        """Number of kernel entries whose mask is 1."""
        return int(np.sum(ops.convert_to_numpy(self.mask)))

    @property
    def sparsity(self):
        """Fraction of kernel entries pruned (mask 0)."""
        total = int(np.prod(self.kernel.shape))
        return 1.0 - self.active_weights / total


@keras.saving.register_keras_serializable(package="keras_egf")
class MaskedDense(MaskedKernelMixin, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is multiplied by a fixed 0/1 mask.

    Takes the same arguments as `keras.layers.Dense` (LoRA and quantization
    excepted), plus `mask_dtype`: how the mask variable is stored, `"int8"`
    (default, one byte an entry) or `"float32"`; either way it is cast to the
    kernel's dtype where it is used, so results do not depend on it. The mask
    starts all ones; set it with `set_mask` or `keras_egf.apply_masks`.
    """

    def __init__(self, units, *args, **kwargs):
        validation.positive_int("units", units)
        super().__init__(units, *args, **kwargs)

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

    def __init__(self, filters, kernel_size, *args, **kwargs):
        validation.positive_int("filters", filters)
        super().__init__(filters, kernel_size, *args, **kwargs)

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


# Legacy .h5 files name classes without their package.
keras.saving.get_custom_objects().update(
    MaskedDense=MaskedDense, MaskedConv2D=MaskedConv2D)


def plain_config(layer):
    """`layer.get_config()` less the pruning options: a config the plain
    Keras layer (Dense, Conv2D, ...) accepts."""
    config = layer.get_config()
    for name in PRUNING_OPTIONS:
        config.pop(name, None)
    return config


def zero_where_pruned(weight, mask):
    """`weight` with +0.0 where `mask` is 0 (a product would keep the sign
    of negative weights, -0.0, which compresses worse in saved files)."""
    weight = ops.convert_to_tensor(weight)
    return ops.where(ops.cast(mask, "bool"), weight, ops.zeros_like(weight))


def is_masked_layer(layer):
    """True for entries of `prunable_layers` that own a mask (a masked
    layer, or a `WeightMask` with a mask)."""
    if isinstance(layer, WeightMask):
        return layer.mask is not None
    return isinstance(layer, MaskedKernelMixin)


class WeightMask:
    """One prunable weight of a layer that is not a Dense/Conv2D: `name`
    (what masks are keyed by: the layer's name, or `layer/weight` when the
    layer has several), `layer`, `kernel` (the variable), `mask` (its mask
    variable, None on a plain layer)."""

    def __init__(self, name, layer, kernel, mask):
        self.name, self.layer, self.kernel, self.mask = name, layer, kernel, mask

    def __repr__(self):
        return (f"WeightMask({self.name!r}, shape={tuple(self.kernel.shape)}, "
                f"sparsity={self.sparsity:.3f})")

    @property
    def sparsity_m_by_n(self):
        return getattr(self.layer, "sparsity_m_by_n", None)

    def set_mask(self, mask):
        """Sets the 0/1 mask and zeroes the pruned entries."""
        set_weight_mask(self.name, self.kernel, self.mask, mask)

    def apply_mask_to_kernel(self):
        """Zeroes entries where the mask is 0 (one variable write)."""
        self.kernel.assign(zero_where_pruned(self.kernel, self.mask))

    @property
    def active_weights(self):
        """Number of entries whose mask is 1 (all, without a mask)."""
        if self.mask is None:
            return int(np.prod(self.kernel.shape))
        return int(np.sum(ops.convert_to_numpy(self.mask)))

    @property
    def sparsity(self):
        return 1.0 - self.active_weights / int(np.prod(self.kernel.shape))


def _mask_array(owner, mask, expected):
    """`mask` as a NumPy array; a ragged one (rows of different lengths,
    which NumPy cannot stack) is a ValueError naming `owner` and the
    argument."""
    try:
        return np.asarray(ops.convert_to_numpy(mask))
    except ValueError:
        lengths = ([len(row) if hasattr(row, "__len__") else "a number"
                    for row in mask][:8] if hasattr(mask, "__iter__") else [])
        raise ValueError(
            f"Mask for {owner} must be an array of the weight's shape "
            f"{expected}; it is ragged (rows of lengths {lengths}). "
            f"Received: mask={reprlib.repr(mask)}") from None


def _checked_mask(owner, weight, mask, expected):
    """`mask` as a NumPy array of 0s and 1s of the `weight`'s (kernel's)
    shape `expected`; ValueError naming `owner` otherwise."""
    mask = _mask_array(owner, mask, expected)
    if mask.shape != expected:
        raise ValueError(
            f"Mask for {owner} must have the {weight}'s shape {expected}. "
            f"Received: mask.shape={mask.shape}")
    bad = ~np.isin(mask, (0, 1))
    if bad.any():
        raise ValueError(f"Mask for {owner} must hold only 0 and 1. "
                         f"Received a value {mask[bad].flat[0]!r}")
    return mask


def set_weight_mask(owner, variable, mask_variable, mask):
    """Validates `mask` (0/1, `variable`'s shape), stores it in
    `mask_variable` and zeroes the pruned entries of `variable`."""
    mask = _checked_mask(repr(owner), "weight", mask, tuple(variable.shape))
    mask_variable.assign(mask.astype(mask_variable.dtype))
    variable.assign(zero_where_pruned(variable, mask))


def weight_key(layer, variable, count):
    """The name masks are keyed by: the layer's, or `layer/weight` when it
    has `count` > 1 prunable weights."""
    if count == 1:
        return layer.name
    return f"{layer.name}/{relative_path(layer, variable)}"


def relative_path(layer, variable):
    """`variable`'s path below `layer`'s (its whole path if not below)."""
    prefix = layer.path + "/"
    path = variable.path
    return path[len(prefix):] if path.startswith(prefix) else path


def model_layers(model):
    """Leaf layers of `model`, nested Sequential/functional models entered."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(model_layers(layer))
        else:
            found.append(layer)
    return found


def layer_entries(layer):
    """The prunable-weight entries of one layer: the layer itself for
    (Masked)Dense/Conv2D, `WeightMask`s otherwise."""
    if isinstance(layer, MaskedKernelMixin):
        return [layer]
    if hasattr(layer, "weight_masks"):  # keras_egf.masking's layers
        return layer.weight_masks()
    if not layer.built:
        return []
    if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) \
            and not hasattr(layer, "get_prunable_weights"):
        return [layer]
    variables = prunable_lib.prunable_variables(layer) or []
    return [WeightMask(weight_key(layer, v, len(variables)), layer, v, None)
            for v in variables]


def prunable_layers(model):
    """One entry per prunable weight tensor of `model` (nested models
    entered), in order; gradient flow is measured over these.

    A (Masked)Dense/Conv2D layer is its own entry (`.kernel`, `.mask`);
    every other prunable weight (keras_egf.prunable says which) is a
    `WeightMask`, with mask None on a plain layer (all ones).
    """
    entries = []
    for layer in model_layers(model):
        entries.extend(layer_entries(layer))
    names = [e.name for e in entries]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"Model {model.name!r} has several prunable layers "
                         f"named {duplicated} (nested models): give them "
                         "unique names.")
    return entries


prunable_weights = prunable_layers
