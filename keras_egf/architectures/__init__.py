"""Architectures by name, each a builder with one shared signature.

    arch = get_architecture("cnn")
    widths = arch.dense_widths(depth=2, dense_width=100, widen_factor=1, wrn_depth=16)
    shapes = arch.kernel_shapes(input_shape, widths, num_classes)   # {layer: shape}
    model = arch.build(input_shape, num_classes, widths, activation="relu",
                       masked=True, batch_norm=True)

`kernel_shapes` names every prunable layer (Dense, Conv2D) the builder
makes, in the builder's naming, with its kernel shape: the same-capacity
plan (keras_egf.capacity) matches a sparse and a dense network layer by
layer from it. Register more with `register_architecture`.
"""

import collections

import numpy as np

from keras_egf.architectures import cnn as cnn_lib
from keras_egf.architectures import wrn as wrn_lib
from keras_egf.architectures.common import (
    ACTIVATIONS,
    activation_layer,
    check_activation,
    check_widths,
    fans,
)
from keras_egf.architectures.mlp import build_mlp, mlp_kernel_shapes, mlp_layer_names
from keras_egf.architectures.cnn import build_cnn
from keras_egf.architectures.wrn import build_wrn, wrn_widths

Architecture = collections.namedtuple(
    "Architecture", ["name", "build", "kernel_shapes", "dense_widths", "skip_option"])
Architecture.__doc__ = """An architecture of the registry.

build(input_shape, num_classes, widths, *, activation, masked,
      kernel_initializers, seed, name, batch_norm, skip_connections,
      weight_decay, wrn_depth, **model_options) -> MaskedModel
kernel_shapes(input_shape, widths, num_classes, wrn_depth) -> {name: shape}
dense_widths(depth, dense_width, widen_factor, wrn_depth) -> widths
skip_option: whether `skip_connections` is a choice (MLP) rather than
    absent (CNN) or built in (WRN).
"""


def _mlp_build(input_shape, num_classes, widths, wrn_depth=None, **options):
    return build_mlp(input_shape, widths, num_classes, **options)


def _mlp_shapes(input_shape, widths, num_classes, wrn_depth=None):
    shapes = mlp_kernel_shapes(int(np.prod(input_shape)), check_widths(widths),
                               num_classes)
    return collections.OrderedDict(zip(mlp_layer_names(len(shapes) - 1), shapes))


def _no_skip(builder):
    def build(input_shape, num_classes, widths, skip_connections=False,
              wrn_depth=None, **options):
        if skip_connections:
            raise ValueError("skip_connections apply to MLPs (a Wide ResNet "
                             "has its own); the CNN has none. Received: "
                             "regularizers with sc")
        return builder(input_shape, num_classes, widths, **options)
    return build


def _cnn_shapes(input_shape, widths, num_classes, wrn_depth=None):
    return collections.OrderedDict(zip(
        cnn_lib.cnn_layer_names(), cnn_lib.cnn_kernel_shapes(input_shape, widths,
                                                             num_classes)))


def _wrn_build(input_shape, num_classes, widths, skip_connections=False,
               wrn_depth=16, **options):
    return build_wrn(input_shape, num_classes, widths, depth=wrn_depth, **options)


def _wrn_shapes(input_shape, widths, num_classes, wrn_depth=16):
    return collections.OrderedDict(zip(
        wrn_lib.wrn_layer_names(input_shape, widths, wrn_depth),
        wrn_lib.wrn_kernel_shapes(input_shape, widths, num_classes, wrn_depth)))


_ARCHITECTURES = {
    "mlp": Architecture(
        "mlp", _mlp_build, _mlp_shapes,
        lambda depth, dense_width, widen_factor=1, wrn_depth=16: [dense_width] * depth,
        True),
    "cnn": Architecture(
        "cnn", _no_skip(build_cnn), _cnn_shapes,
        lambda depth, dense_width, widen_factor=1, wrn_depth=16: [
            c * widen_factor for c in cnn_lib.DEFAULT_WIDTHS],
        False),
    "wrn": Architecture(
        "wrn", _wrn_build, _wrn_shapes,
        lambda depth, dense_width, widen_factor=1, wrn_depth=16: wrn_widths(
            wrn_depth, widen_factor),
        False),
}
ARCHITECTURE_NAMES = tuple(_ARCHITECTURES)


def all_architecture_names():
    """Names of the registered architectures."""
    return sorted(_ARCHITECTURES)


def register_architecture(architecture):
    """Registers an `Architecture` under its name."""
    _ARCHITECTURES[architecture.name] = architecture


def get_architecture(name):
    """The architecture registered as `name`; an unknown name lists the
    supported ones."""
    if name not in _ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}. Supported: "
                         f"{all_architecture_names()}")
    return _ARCHITECTURES[name]
