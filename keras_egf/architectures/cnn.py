"""A small CIFAR-style convnet: four 3x3 convolutions (32-64-64-128 by
default), max-pooling after the second and the fourth, global average
pooling, one hidden Dense layer (the head) and the logits."""

import keras

from keras_egf.architectures.common import (
    activation_layer,
    bias_before_norm,
    check_image_shape,
    check_initializers,
    check_shared_arguments,
    check_widths,
    l2_regularizer,
)
from keras_egf import validation
from keras_egf.layers import MaskedConv2D, MaskedDense
from keras_egf.model import MaskedModel

DEFAULT_WIDTHS = (32, 64, 64, 128, 128)  # four conv layers, then the head
KERNEL_SIZE = 3
_POOL_AFTER = (1, 3)


def _check_cnn(input_shape, widths):
    widths = check_widths(widths, "a CNN needs its channel widths", "widths")
    if len(widths) != len(DEFAULT_WIDTHS):
        validation.fail("widths", f"{len(DEFAULT_WIDTHS)} widths (4 conv "
                        "layers' channels, then the dense head's units)", widths)
    check_image_shape(input_shape, "a CNN")
    return widths


def cnn_kernel_shapes(input_shape, widths, num_classes):
    """Kernel shapes: four (3, 3, in, out) convolutions, the head's
    (channels, units) and the output's (units, classes)."""
    widths = _check_cnn(input_shape, widths)
    channels = [int(input_shape[-1])] + widths[:4]
    convs = [(KERNEL_SIZE, KERNEL_SIZE, a, b) for a, b in zip(channels[:-1], channels[1:])]
    return convs + [(widths[3], widths[4]), (widths[4], int(num_classes))]


def cnn_layer_names(widths=DEFAULT_WIDTHS):
    """Names build_cnn gives its prunable layers."""
    return [f"conv_{i}" for i in range(4)] + ["head", "output"]


def build_cnn(input_shape, num_classes, widths=DEFAULT_WIDTHS, activation="relu",
              batch_norm=False, weight_decay=0.0, masked=True,
              kernel_initializers=None, seed=None, name="cnn", **model_options):
    """Builds the CNN as a `MaskedModel` (logits output).

    Args:
        input_shape: (height, width, channels).
        widths: the four conv layers' channels and the head's units.
        batch_norm: BatchNorm after each convolution and the head, before
            the activation; those layers then have no bias
            (see `bias_before_norm`).
        weight_decay: L2 factor on every kernel (0 = none).
        masked: MaskedConv2D/MaskedDense (True) or plain Keras layers.
        kernel_initializers: one per prunable layer; default He/Glorot
            normal with each kernel's own fans.
        **model_options: passed to MaskedModel.
    """
    widths = _check_cnn(input_shape, widths)
    check_shared_arguments(activation, num_classes, weight_decay)
    shapes = cnn_kernel_shapes(input_shape, widths, num_classes)
    inits = check_initializers(kernel_initializers, shapes, activation, seed)
    names = cnn_layer_names()
    regularizer = l2_regularizer(weight_decay)
    conv_cls = MaskedConv2D if masked else keras.layers.Conv2D
    dense_cls = MaskedDense if masked else keras.layers.Dense

    def normalise_and_activate(x, i):
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(x)
        return activation_layer(activation, name=f"{activation}_{i}")(x)

    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = inputs
    for i in range(4):
        x = conv_cls(widths[i], KERNEL_SIZE, padding="same",
                     use_bias=bias_before_norm(batch_norm),
                     kernel_initializer=inits[i], kernel_regularizer=regularizer,
                     name=names[i])(x)
        x = normalise_and_activate(x, i)
        if i in _POOL_AFTER:
            x = keras.layers.MaxPooling2D(name=f"pool_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = dense_cls(widths[4], use_bias=bias_before_norm(batch_norm),
                  kernel_initializer=inits[4],
                  kernel_regularizer=regularizer, name=names[4])(x)
    x = normalise_and_activate(x, 4)
    outputs = dense_cls(num_classes, kernel_initializer=inits[5],
                        kernel_regularizer=regularizer, name=names[5])(x)
    return MaskedModel(inputs=inputs, outputs=outputs, name=name, **model_options)
