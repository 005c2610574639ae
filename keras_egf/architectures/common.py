"""What every architecture shares: activations, width checks, kernel
initialisers from given fans, and the regulariser options."""

import keras
import numpy as np

from keras_egf import initializers as init_lib
from keras_egf.activations import SReLU

ACTIVATIONS = ("relu", "prelu", "elu", "swish", "srelu", "sigmoid")


def check_activation(activation):
    """Raises ValueError unless `activation` is a supported name."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {activation!r}. Supported: {list(ACTIVATIONS)}"
        )


def activation_layer(activation, name):
    """A fresh layer computing `activation` (one of ACTIVATIONS)."""
    check_activation(activation)
    if activation == "prelu":
        return keras.layers.PReLU(name=name)
    if activation == "srelu":
        return SReLU(name=name)
    keras_name = {"swish": "silu"}.get(activation, activation)
    return keras.layers.Activation(keras_name, name=name)


def bias_before_norm(batch_norm):
    """Whether a Dense/Conv layer that feeds `batch_norm` (True: a
    BatchNormalization follows it) gets a bias: not when one follows.

    BatchNorm subtracts the batch mean, so such a bias changes nothing the
    network computes in training and its gradient is zero in exact
    arithmetic; in float32 it is summation rounding (~1e-9). Adam and RMSProp
    divide by the gradient's running RMS, which turns that noise into steps
    of a fair fraction of the learning rate, and the bias then reaches test
    outputs through BatchNorm's lagging moving mean. A bias there would make
    BN results depend on summation order (oneDNN on or off, packed or not);
    without it they do not, and the network computes the same functions.
    """
    return not batch_norm


def check_widths(hidden_widths, what="An MLP needs at least one hidden layer"):
    """Validates a list of hidden widths (at least one, each positive)."""
    widths = list(hidden_widths)
    if not widths:
        raise ValueError(f"{what}. Received: depth=0")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w <= 0:
            raise ValueError(
                f"Hidden widths must be positive integers. Received: width={w!r}"
            )
    return [int(w) for w in widths]


def check_num_classes(num_classes):
    """Raises ValueError unless `num_classes` is an integer >= 2."""
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2. Received: num_classes={num_classes!r}"
        )


def check_weight_decay(weight_decay):
    """Raises ValueError unless `weight_decay` is a finite number >= 0."""
    if not np.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(
            f"weight_decay must be >= 0. Received: weight_decay={weight_decay!r}"
        )


def fans(shape):
    """(fan_in, fan_out) of a Dense (2-D) or convolution kernel, as Keras
    counts them: the receptive field times the input (output) channels."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return receptive * int(shape[-2]), receptive * int(shape[-1])


def default_initializers(shapes, activation, seed=None):
    """He normal (ReLU-like activations) or Glorot normal per kernel shape,
    with the kernel's own fans; kernel i seeded with seed + i."""
    scheme = init_lib.scheme_for_activation(activation)
    return [init_lib.fan_scaled_normal(
                scheme, *fans(shape), seed=None if seed is None else seed + i)
            for i, shape in enumerate(shapes)]


def check_initializers(kernel_initializers, shapes, activation, seed):
    """`kernel_initializers`, or the defaults; one per kernel."""
    if kernel_initializers is None:
        return default_initializers(shapes, activation, seed)
    if len(kernel_initializers) != len(shapes):
        raise ValueError(
            f"Expected {len(shapes)} kernel initializers (one per prunable "
            f"layer). Received: {len(kernel_initializers)}"
        )
    return list(kernel_initializers)
