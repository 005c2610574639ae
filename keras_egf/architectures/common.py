"""What every architecture shares: activations, width checks, kernel
initialisers from given fans, and the regulariser options."""

import keras
import numpy as np

from keras_egf import initializers as init_lib
from keras_egf import validation
from keras_egf.activations import SReLU

ACTIVATIONS = ("relu", "prelu", "elu", "swish", "srelu", "sigmoid")


def check_activation(activation):
    """Raises ValueError unless `activation` is a supported name."""
    return validation.one_of("activation", activation, ACTIVATIONS)


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


def l2_regularizer(weight_decay):
    """The L2 kernel regulariser of factor `weight_decay`, or None for 0."""
    return keras.regularizers.L2(weight_decay) if weight_decay else None


def check_widths(widths, what="an MLP needs at least one hidden layer",
                 name="hidden_widths"):
    """`widths` (argument `name`) as a list of ints: at least one (`what`
    says why), each positive."""
    widths = list(widths)
    if not widths:
        validation.fail(name, f"a non-empty list ({what})", widths)
    if not all(validation.is_int(w) and w > 0 for w in widths):
        validation.fail(name, "a list of positive integers", widths)
    return [int(w) for w in widths]


def check_num_classes(num_classes):
    """Raises ValueError unless `num_classes` is an integer >= 2."""
    return validation.integer("num_classes", num_classes, minimum=2)


def check_weight_decay(weight_decay):
    """Raises ValueError unless `weight_decay` is a finite number >= 0."""
    return validation.number_in("weight_decay", weight_decay, 0)


def check_shared_arguments(activation, num_classes, weight_decay):
    """The checks every builder makes of the arguments all builders take."""
    check_activation(activation)
    check_num_classes(num_classes)
    check_weight_decay(weight_decay)


def check_image_shape(input_shape, what):
    """`input_shape` as a tuple; ValueError unless it is (height, width,
    channels): `what` names the network that needs it."""
    if len(input_shape) != 3:
        validation.fail("input_shape", f"an image shape (height, width, "
                        f"channels) for {what}", tuple(input_shape))
    return tuple(input_shape)


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
        validation.fail("kernel_initializers", f"{len(shapes)} initializers, "
                        "one per prunable layer", kernel_initializers)
    return list(kernel_initializers)
