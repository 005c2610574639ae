"""Wide ResNets (Zagoruyko & Komodakis 2016): WRN-depth-k with
pre-activation blocks (BatchNorm, activation, 3x3 convolution, twice), a
1x1 projection shortcut where a block changes width or stride, three groups
of (depth - 4) / 6 blocks at widths 16k, 32k, 64k after a 16-channel stem.
"""

import keras

from keras_egf.architectures.common import (
    activation_layer,
    check_image_shape,
    check_initializers,
    check_shared_arguments,
    check_widths,
    l2_regularizer,
)
from keras_egf import validation
from keras_egf.layers import MaskedConv2D, MaskedDense
from keras_egf.model import MaskedModel

NAMED = {"wrn-16-4": (16, 4), "wrn-28-10": (28, 10)}


def wrn_widths(depth=16, widen_factor=4):
    """The stem's and the three groups' channels: 16, 16k, 32k, 64k."""
    blocks_per_group(depth)
    widen_factor = validation.positive_int("widen_factor", widen_factor)
    return [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]


def blocks_per_group(depth, name="depth"):
    """(depth - 4) / 6; depth (argument `name`) must be 6n + 4 (10, 16, 22,
    28, 40, ...)."""
    if not validation.is_int(depth) or depth < 10 or (depth - 4) % 6:
        validation.fail(name, "6n + 4 with n >= 1 (10, 16, 22, 28, ...), a "
                        "Wide ResNet's depth", depth)
    return (int(depth) - 4) // 6


def _layout(input_shape, widths, depth):
    """[(name, kernel shape, stride)] of every prunable layer but the output."""
    widths = check_widths(widths, "a Wide ResNet needs its channel widths",
                          "widths")
    if len(widths) != 4:
        validation.fail("widths", "4 widths (stem, then three groups)", widths)
    check_image_shape(input_shape, "a Wide ResNet")
    layout = [("stem", (3, 3, int(input_shape[-1]), widths[0]), 1)]
    channels = widths[0]
    for g, out in enumerate(widths[1:]):
        for b in range(blocks_per_group(depth)):
            stride = 2 if g > 0 and b == 0 else 1
            prefix = f"group{g}_block{b}"
            layout.append((f"{prefix}_conv1", (3, 3, channels, out), stride))
            layout.append((f"{prefix}_conv2", (3, 3, out, out), 1))
            if channels != out or stride != 1:
                layout.append((f"{prefix}_shortcut", (1, 1, channels, out), stride))
            channels = out
    return layout


def wrn_kernel_shapes(input_shape, widths, num_classes, depth=16):
    """Kernel shapes in `wrn_layer_names` order, the output Dense last."""
    return [shape for _, shape, _ in _layout(input_shape, widths, depth)] + [
        (check_widths(widths, name="widths")[-1], int(num_classes))]


def wrn_layer_names(input_shape, widths, depth=16):
    """Names build_wrn gives its prunable layers (stem, groupG_blockB_conv1,
    _conv2, _shortcut, output)."""
    return [name for name, _, _ in _layout(input_shape, widths, depth)] + ["output"]


def build_wrn(input_shape, num_classes, widths=None, activation="relu",
              batch_norm=True, weight_decay=0.0, masked=True,
              kernel_initializers=None, seed=None, name="wrn", depth=16,
              **model_options):
    """Builds WRN-`depth`-k as a `MaskedModel` (logits output).

    Args:
        widths: stem and group channels (default `wrn_widths(depth, 4)`).
        batch_norm: the pre-activation BatchNorms (False drops them).
        depth: 6n + 4 (16 and 28 for WRN-16-4, WRN-28-10).
        Other arguments as `build_cnn`.
    """
    widths = check_widths(widths or wrn_widths(depth, 4), name="widths")
    check_shared_arguments(activation, num_classes, weight_decay)
    layout = _layout(input_shape, widths, depth)
    shapes = [shape for _, shape, _ in layout] + [(widths[-1], int(num_classes))]
    inits = dict(zip([n for n, _, _ in layout] + ["output"],
                     check_initializers(kernel_initializers, shapes, activation, seed)))
    regularizer = l2_regularizer(weight_decay)
    conv_cls = MaskedConv2D if masked else keras.layers.Conv2D
    dense_cls = MaskedDense if masked else keras.layers.Dense

    def conv(x, name, shape, stride):
        return conv_cls(shape[-1], shape[:2], strides=stride, padding="same",
                        use_bias=False, kernel_initializer=inits[name],
                        kernel_regularizer=regularizer, name=name)(x)

    def pre_activation(x, name):
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        return activation_layer(activation, name=f"{name}_{activation}")(x)

    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = conv(inputs, *layout[0])
    by_name = {n: (s, st) for n, s, st in layout}
    for g in range(3):
        for b in range(blocks_per_group(depth)):
            prefix = f"group{g}_block{b}"
            h = pre_activation(x, f"{prefix}_pre1")
            y = conv(h, f"{prefix}_conv1", *by_name[f"{prefix}_conv1"])
            y = pre_activation(y, f"{prefix}_pre2")
            y = conv(y, f"{prefix}_conv2", *by_name[f"{prefix}_conv2"])
            if f"{prefix}_shortcut" in by_name:
                x = conv(h, f"{prefix}_shortcut", *by_name[f"{prefix}_shortcut"])
            x = keras.layers.Add(name=f"{prefix}_add")([x, y])
    x = pre_activation(x, "final")
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = dense_cls(num_classes, kernel_initializer=inits["output"],
                        kernel_regularizer=regularizer, name="output")(x)
    return MaskedModel(inputs=inputs, outputs=outputs, name=name, **model_options)
