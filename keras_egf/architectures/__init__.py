"""Architectures by name, each a builder with one shared signature.

    arch = get_architecture("cnn")
    widths = arch.dense_widths(depth=2, dense_width=100, widen_factor=1, wrn_depth=16)
    shapes = arch.kernel_shapes(input_shape, widths, num_classes)   # {layer: shape}
    model = arch.build(input_shape, num_classes, widths, activation="relu",
                       masked=True, batch_norm=True)

`kernel_shapes` names every prunable layer (Dense, Conv2D) the builder
makes, in the builder's naming, with its kernel shape: the same-capacity
plan (keras_egf.capacity) matches a sparse and a dense network layer by
layer from it. The architectures are a `Registry` (`ARCHITECTURES`), read
when a name is used; register more with `register_architecture`.
"""

import collections

import numpy as np

from keras_egf.architectures import cnn as cnn_lib
from keras_egf.architectures import wrn as wrn_lib
from keras_egf.architectures.common import (  # noqa: F401  (re-exported)
    ACTIVATIONS,
    activation_layer,
    check_activation,
    check_widths,
    fans,
)
from keras_egf.architectures.mlp import build_mlp, mlp_kernel_shapes, mlp_layer_names
from keras_egf.architectures.cnn import build_cnn
from keras_egf.architectures.wrn import build_wrn, wrn_widths
from keras_egf import validation
from keras_egf.registry import Registry

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
            validation.fail("skip_connections", "False: skip connections "
                            "are an MLP's option (a Wide ResNet has its own; "
                            "the CNN has none)", skip_connections)
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


ARCHITECTURES = Registry(
    "architecture", register_with="keras_egf.architectures.register_architecture")
ARCHITECTURE_NAMES = ARCHITECTURES  # its names, read when used (was a tuple)


def all_architecture_names():
    """Names of the registered architectures, sorted."""
    return sorted(ARCHITECTURES)


def register_architecture(architecture, overwrite=False):
    """Registers an `Architecture` under its name; then the name is an
    `arch` of `ComparisonConfig` and `keras_egf.capacity`."""
    if not all(hasattr(architecture, f) for f in Architecture._fields):
        validation.fail("architecture", "a keras_egf.architectures."
                        f"Architecture (fields {list(Architecture._fields)})",
                        architecture)
    return ARCHITECTURES.register(architecture.name, architecture,
                                  overwrite=overwrite)


def get_architecture(name):
    """The architecture registered as `name`; an unknown name lists the
    supported ones."""
    return ARCHITECTURES.get(name)


# In name order, as `all_architecture_names` lists them.
register_architecture(Architecture(
    "cnn", _no_skip(build_cnn), _cnn_shapes,
    lambda depth, dense_width, widen_factor=1, wrn_depth=16: [
        c * widen_factor for c in cnn_lib.DEFAULT_WIDTHS],
    False))
register_architecture(Architecture(
    "mlp", _mlp_build, _mlp_shapes,
    lambda depth, dense_width, widen_factor=1, wrn_depth=16: [dense_width] * depth,
    True))
register_architecture(Architecture(
    "wrn", _wrn_build, _wrn_shapes,
    lambda depth, dense_width, widen_factor=1, wrn_depth=16: wrn_widths(
        wrn_depth, widen_factor),
    False))
