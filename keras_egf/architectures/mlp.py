"""The paper's MLPs with masked or plain Dense layers."""

import keras
import numpy as np

from keras_egf.architectures.common import (
    activation_layer,
    bias_before_norm,
    check_initializers,
    check_shared_arguments,
    check_widths,
    l2_regularizer,
)
from keras_egf import validation
from keras_egf.layers import MaskedDense
from keras_egf.model import MaskedModel


def mlp_kernel_shapes(input_dim, hidden_widths, num_classes):
    """Kernel shapes [(fan_in, fan_out)] of an MLP, hidden layers then output."""
    dims = [int(input_dim)] + list(hidden_widths) + [int(num_classes)]
    return list(zip(dims[:-1], dims[1:]))


def mlp_layer_names(depth):
    """Names build_mlp gives its Dense layers: hidden_0.. then output."""
    return [f"hidden_{i}" for i in range(depth)] + ["output"]


def build_mlp(
    input_shape,
    hidden_widths,
    num_classes,
    activation="relu",
    batch_norm=False,
    skip_connections=False,
    weight_decay=0.0,
    masked=True,
    kernel_initializers=None,
    seed=None,
    name="mlp",
    **model_options,
):
    """Builds an MLP as a `MaskedModel` (logits output).

    Args:
        input_shape: shape of one example; flattened if it has several axes.
        hidden_widths: list of hidden layer widths (depth = its length).
        num_classes: units of the output layer (logits, no softmax).
        activation: one of ACTIVATIONS.
        batch_norm: BatchNorm after each hidden Dense, before the activation;
            those Dense layers then have no bias (see `bias_before_norm`).
        skip_connections: add each hidden layer's input to its output
            (hidden widths must then be equal).
        weight_decay: L2 factor on every kernel (0 = none).
        masked: MaskedDense layers (True) or plain keras.layers.Dense.
        kernel_initializers: one initializer per Dense layer (hidden then
            output); default He normal (ReLU-like) or Glorot normal with each
            layer's own fans.
        seed: seeds the default initializers.
        **model_options: passed to MaskedModel (track_gradient_flow, ...).
    """
    widths = _check_mlp(hidden_widths, activation, num_classes, weight_decay,
                        skip_connections)
    shapes = mlp_kernel_shapes(int(np.prod(input_shape)), widths, num_classes)
    names = mlp_layer_names(len(widths))
    initializers = check_initializers(kernel_initializers, shapes, activation,
                                      seed)
    dense_cls = MaskedDense if masked else keras.layers.Dense
    regularizer = l2_regularizer(weight_decay)

    def dense(i, units, use_bias=True):
        return dense_cls(
            units, use_bias=use_bias, kernel_initializer=initializers[i],
            kernel_regularizer=regularizer, name=names[i])

    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = inputs
    if len(input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    x = _hidden_layers(x, widths, dense, activation, batch_norm,
                       skip_connections)
    outputs = dense(len(widths), num_classes)(x)
    return MaskedModel(inputs=inputs, outputs=outputs, name=name, **model_options)


def _check_mlp(hidden_widths, activation, num_classes, weight_decay,
               skip_connections):
    """build_mlp's arguments checked; returns the widths as a list of ints."""
    widths = check_widths(hidden_widths)
    check_shared_arguments(activation, num_classes, weight_decay)
    if skip_connections and len(set(widths)) > 1:
        validation.fail("hidden_widths", "equal widths when skip_connections="
                        "True (each hidden layer's input is added to its "
                        "output)", widths)
    return widths


def _hidden_layers(x, widths, dense, activation, batch_norm, skip_connections):
    """The hidden stack on `x`: Dense `dense(i, units, use_bias)`, then
    BatchNorm (`batch_norm`), the activation, and the skip (`skip_connections`,
    from the second layer on)."""
    for i, units in enumerate(widths):
        h = dense(i, units, use_bias=bias_before_norm(batch_norm))(x)
        if batch_norm:
            h = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(h)
        h = activation_layer(activation, name=f"{activation}_{i}")(h)
        if skip_connections and i > 0:
            h = keras.layers.Add(name=f"skip_{i}")([x, h])
        x = h
    return x
