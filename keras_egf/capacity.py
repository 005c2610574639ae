"""Same capacity (SC-SDC, docs/method.md §3): counting active weights and
building dense/sparse networks with exactly equal per-layer capacity."""

import collections

import keras
import numpy as np

from keras_egf import architectures
from keras_egf import initializers as init_lib
from keras_egf import layers as layers_lib
from keras_egf import pruning as pruning_lib
from keras_egf import validation
from keras_egf.architectures.common import check_num_classes
from keras_egf._warnings import warn
from keras_egf.model import MaskedModel

LayerCapacity = collections.namedtuple(
    "LayerCapacity", ["name", "dense_shape", "sparse_shape", "active"]
)
CapacityPair = collections.namedtuple("CapacityPair", ["dense", "sparse", "plan"])
LayerMismatch = collections.namedtuple(
    "LayerMismatch", ["name", "sparse_active", "dense_weights", "exact"]
)
DenseEquivalent = collections.namedtuple(
    "DenseEquivalent", ["model", "report", "exact"]
)


def active_weights(model):
    """{layer name: number of kernel weights whose mask is 1} per prunable layer.

    A plain Dense/Conv2D layer counts all its kernel entries.
    """
    counts = collections.OrderedDict()
    for layer in layers_lib.prunable_layers(model):
        if layers_lib.is_masked_layer(layer):
            counts[layer.name] = layer.active_weights
        else:
            counts[layer.name] = int(np.prod(layer.kernel.shape))
    return counts


def sparse_widths(hidden_widths, sparse_width_multiplier):
    """Sparse widths: round(multiplier * dense width), multiplier >= 1."""
    m = validation.number_in("sparse_width_multiplier",
                             sparse_width_multiplier, 1)
    return [int(round(m * w)) for w in architectures.check_widths(hidden_widths)]


def same_capacity_plan(input_shape, hidden_widths, num_classes,
                       sparse_width_multiplier, arch="mlp", **arch_options):
    """Per-layer dense shape, sparse shape and the shared active count.

    `input_shape`: one example's shape (an int is an MLP's input size);
    `hidden_widths`: the dense network's widths (an MLP's hidden widths, a
    convnet's channels). The sparse network has every width times the
    multiplier; each of its layers keeps exactly prod(dense_shape) weights.
    """
    architecture = architectures.get_architecture(arch)
    check_num_classes(num_classes)  # before the shapes' fans are used
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (int(input_shape),)
    dense = architecture.kernel_shapes(input_shape, list(hidden_widths),
                                       num_classes, **arch_options)
    sparse = architecture.kernel_shapes(
        input_shape, sparse_widths(hidden_widths, sparse_width_multiplier),
        num_classes, **arch_options)
    return [LayerCapacity(name, shape, sparse[name], int(np.prod(shape)))
            for name, shape in dense.items()]


def same_capacity_pair(input_shape, hidden_widths, num_classes,
                       sparse_width_multiplier, activation="relu", seed=None,
                       pruning="random", batches=None, pruning_options=None,
                       arch="mlp", wrn_depth=16, **build_options):
    """Builds a dense network and a wider sparse one of equal per-layer capacity.

    `arch`: an architecture of `keras_egf.architectures` (mlp, cnn, wrn);
    `hidden_widths` its dense widths (an MLP's hidden widths; a convnet's
    channels). Sparse widths = multiplier x dense widths. Every sparse layer
    keeps exactly as many weights as its dense twin has; the sparse active
    weights are drawn from the dense twin's distribution (He normal for
    ReLU-like activations, Glorot normal otherwise, with the dense layer's
    fans: for a convolution the receptive field times its channels).
    Returns CapacityPair(dense, sparse, plan); both models are
    `MaskedModel`s (the dense one of plain Keras layers).

    `pruning`: the method (`keras_egf.pruning`) that decides *which* weights
    each sparse layer keeps; the plan fixes *how many*. Data-driven methods
    (snip, grasp, egf) score on `batches`; `pruning_options` go to the score.
    """
    architectures.check_activation(activation)
    architecture = architectures.get_architecture(arch)
    plan = same_capacity_plan(input_shape, hidden_widths, num_classes,
                              sparse_width_multiplier, arch=arch,
                              wrn_depth=wrn_depth)
    scheme = init_lib.scheme_for_activation(activation)
    base = 0 if seed is None else int(seed)

    def build(widths, masked, offset, name):
        # The plan lists the layers in the builder's kernel order.
        inits = [init_lib.fan_scaled_normal(
                     scheme, *architectures.fans(layer.dense_shape),
                     seed=None if seed is None else base + offset + i)
                 for i, layer in enumerate(plan)]
        return architecture.build(
            input_shape, num_classes, widths, activation=activation,
            masked=masked, kernel_initializers=inits, seed=seed, name=name,
            wrn_depth=wrn_depth, **build_options)

    dense = build(list(hidden_widths), False, 0, "dense")
    sparse = build(sparse_widths(hidden_widths, sparse_width_multiplier), True,
                   1000, "sparse")
    pruning_lib.prune(sparse, method=pruning, seed=seed, batches=batches,
                      counts={layer.name: layer.active for layer in plan},
                      **(pruning_options or {}))
    return CapacityPair(dense, sparse, plan)


def dense_equivalent(model):
    """Clones a masked model into its dense twin of equal per-layer capacity.

    Each masked Dense (Conv2D) layer becomes a plain Dense (Conv2D) with
    round(active / fan_in) units (filters), fan_in taken in the dense twin
    (its input's channels there, times the kernel's window); the last
    prunable layer keeps its units (the classes). Other layers are re-created
    from their configs, branches and merges (skip connections, residual
    blocks) included. Returns DenseEquivalent(model, report, exact):
    `report` lists, per layer, the sparse active count and the dense weight
    count, with `exact` False where they differ (logged as warnings). Where
    the rounded widths cannot meet at a merge, a ValueError names it.
    """
    prunable = _check_dense_sizable(model)
    report = []
    call = _dense_twin_call(prunable, active_weights(model), report)
    functional = keras.Model(model.inputs, model.outputs)  # Sequential too
    clone = keras.models.clone_model(functional, clone_function=lambda l: l,
                                     call_function=call)
    for r in report:
        if not r.exact:
            warn(f"dense_equivalent: layer {r.name!r} has {r.sparse_active} "
                 f"active sparse weights but its dense twin has {r.dense_weights}.")
    dense = MaskedModel(inputs=clone.inputs, outputs=clone.outputs,
                        name=f"{model.name}_dense")
    return DenseEquivalent(dense, report, all(r.exact for r in report))


def _check_dense_sizable(model):
    """The model's prunable layers, all Dense or Conv2D (ValueError if not)."""
    prunable = layers_lib.prunable_layers(model)
    if not prunable:
        raise ValueError(f"Model {model.name!r} has no Dense/Conv2D layers.")
    other = [e.name for e in prunable if isinstance(e, layers_lib.WeightMask)]
    if other:
        raise ValueError(
            "dense_equivalent sizes Dense and Conv2D layers (units, filters "
            f"from active weights); model {model.name!r} also prunes {other}, "
            "whose dense width is not defined by an active count.")
    return prunable


def _dense_twin_call(prunable, counts, report):
    """The `call_function` of `keras.models.clone_model` that makes the
    dense twin: prunable layers re-sized to their active counts (appended
    to `report`), other layers re-created from their configs."""
    names = {l.name for l in prunable}
    last = prunable[-1].name

    def call(layer, *args, **kwargs):
        if layer.name not in names:
            new = layer.__class__.from_config(layer.get_config())
            try:
                return new(*args, **kwargs)
            except ValueError as e:
                raise ValueError(
                    f"dense_equivalent: the dense widths meet unequal at "
                    f"layer {layer.name!r} ({e})") from None
        x = args[0]
        config = layers_lib.plain_config(layer)
        fan_in = int(x.shape[-1])
        if isinstance(layer, keras.layers.Conv2D):
            fan_in *= int(np.prod(layer.kernel_size))
            key, cls = "filters", keras.layers.Conv2D
        else:
            key, cls = "units", keras.layers.Dense
        active = counts[layer.name]
        if layer.name != last:
            config[key] = max(1, int(round(active / fan_in)))
        dense_weights = fan_in * config[key]
        report.append(LayerMismatch(layer.name, active, dense_weights,
                                    active == dense_weights))
        return cls.from_config(config)(x, **kwargs)

    return call
