"""Which weights of a Keras 3 layer can be pruned: one registry.

TFMOT's prune registry, for Keras 3. A layer's prunable weights are found,
in this order:
1. the layer implements `get_prunable_weights()` (a `PrunableLayer`, or any
   layer with that method): the variables it returns;
2. its class (or the nearest registered base class, so subclasses of
   `Dense` count as `Dense`) is in the registry: the variables at the
   registered attribute paths;
3. an `RNN` (SimpleRNN, GRU, LSTM, `RNN` over cells, `StackedRNNCells`):
   every cell's `kernel` and `recurrent_kernel` (or a `PrunableLayer`
   cell's own list).
Layers with no weights, and the normalisation layers, are accepted and
pruned in nothing (`is_weightless_or_normalization`). Any other layer with
weights cannot be pruned: inside a model it is left dense with a warning
that names it, alone it is refused.

    @keras.saving.register_keras_serializable()
    class Scale(keras.layers.Layer, keras_egf.PrunableLayer):
        def build(self, shape):
            self.w = self.add_weight(shape=shape[-1:])
        def call(self, x):
            return x * self.w
        def get_prunable_weights(self):
            return [self.w]
"""

import abc

import keras

_REGISTRY = {}  # class -> tuple of attribute paths ("a.b" follows attributes)

# Normalisation layers hold weights but are not pruned (as in TFMOT).
_NORMALIZATION = tuple(
    getattr(keras.layers, name) for name in (
        "BatchNormalization", "LayerNormalization", "GroupNormalization",
        "UnitNormalization", "RMSNormalization", "SpectralNormalization",
        "Normalization")
    if hasattr(keras.layers, name))


class PrunableLayer(abc.ABC):
    """Interface of a custom layer keras-egf can prune (TFMOT's
    `PrunableLayer`): `get_prunable_weights()` returns the variables to mask.

    Mix it into a `keras.layers.Layer` subclass; `prune_low_magnitude`,
    `prune` (from scratch) and `DynamicSparsity` then prune those variables
    as they do a `Dense` kernel. Register the class for saving
    (`keras.saving.register_keras_serializable`).
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """The layer's variables to prune (each gets its own mask)."""
        raise NotImplementedError("Must be implemented in subclasses.")


def register_prunable_layer(layer_class, weight_paths):
    """Registers the prunable weights of `layer_class` (and its
    subclasses): attribute paths such as `("kernel",)` or
    `("_query_dense.kernel",)`."""
    if not (isinstance(layer_class, type)
            and issubclass(layer_class, keras.layers.Layer)):
        raise ValueError("layer_class must be a keras.layers.Layer subclass. "
                         f"Received: layer_class={layer_class!r}")
    if isinstance(weight_paths, str) or not all(
            isinstance(p, str) and p for p in weight_paths):
        raise ValueError("weight_paths must be a list of attribute paths. "
                         f"Received: weight_paths={weight_paths!r}")
    _REGISTRY[layer_class] = tuple(weight_paths)


for _name, _paths in (
        ("Dense", ("kernel",)), ("EinsumDense", ("kernel",)),
        ("Conv1D", ("kernel",)), ("Conv2D", ("kernel",)),
        ("Conv3D", ("kernel",)), ("Conv1DTranspose", ("kernel",)),
        ("Conv2DTranspose", ("kernel",)), ("Conv3DTranspose", ("kernel",)),
        ("SeparableConv1D", ("pointwise_kernel",)),
        ("SeparableConv2D", ("pointwise_kernel",)),
        ("DepthwiseConv1D", ("kernel",)),
        ("DepthwiseConv2D", ("kernel",)),
        ("Embedding", ("embeddings",)),
        ("MultiHeadAttention", ("_query_dense.kernel", "_key_dense.kernel",
                                "_value_dense.kernel",
                                "_output_dense.kernel"))):
    register_prunable_layer(getattr(keras.layers, _name), _paths)

_RNN_CELLS = (keras.layers.SimpleRNNCell, keras.layers.GRUCell,
              keras.layers.LSTMCell)
_RNN_CELL_PATHS = ("kernel", "recurrent_kernel")


def _resolve(layer, path):
    value = layer
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


def registered_class_paths(layer_class):
    """The registered attribute paths of `layer_class` (nearest registered
    base class), or None."""
    for cls in layer_class.__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def registered_paths(layer):
    """The registered attribute paths for `layer`'s class, or None."""
    return registered_class_paths(type(layer))


def _rnn_cells(layer):
    cell = layer.cell
    return list(cell.cells) if isinstance(cell, keras.layers.StackedRNNCells) \
        else [cell]


def _cell_weights(cell):
    if hasattr(cell, "get_prunable_weights"):
        return list(cell.get_prunable_weights())
    if isinstance(cell, _RNN_CELLS):
        return [getattr(cell, p) for p in _RNN_CELL_PATHS]
    return None


def supports(layer):
    """True if keras-egf knows `layer`'s prunable weights (possibly none);
    works on unbuilt layers."""
    if hasattr(layer, "get_prunable_weights") or registered_paths(layer):
        return True
    if isinstance(layer, keras.layers.RNN):
        return all(hasattr(c, "get_prunable_weights")
                   or isinstance(c, _RNN_CELLS) for c in _rnn_cells(layer))
    return is_weightless_or_normalization(layer)


def prunable_variables(layer, building=False):
    """The variables of a built `layer` to prune, `[]` for a layer pruned
    in nothing, None when its weights cannot be pruned. `building`: called
    from the layer's `build`, before Keras marks it built."""
    if not supports(layer):
        return None
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    if not (layer.built or building):
        return []
    paths = registered_paths(layer)
    if paths is not None:
        return [_resolve(layer, p) for p in paths]
    if isinstance(layer, keras.layers.RNN):
        return [w for cell in _rnn_cells(layer) for w in _cell_weights(cell)]
    return []


# Built-in layers with weights and no registered prunable weights.
_WEIGHTED = tuple(getattr(keras.layers, name) for name in (
    "PReLU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Wrapper",
    "Bidirectional", "TimeDistributed") if hasattr(keras.layers, name))


def is_weightless_or_normalization(layer):
    """Layers accepted as pruned in nothing: no weights (Dropout, pooling,
    Flatten, Add, ...; an unbuilt layer counts by its class) or a
    normalisation layer."""
    if isinstance(layer, _NORMALIZATION):
        return True
    if (hasattr(layer, "get_prunable_weights")
            or registered_paths(layer) is not None
            or isinstance(layer, (keras.layers.RNN, keras.Model) + _WEIGHTED)):
        return False
    if layer.built:
        return not layer.weights
    # Unbuilt: Keras's own layers not listed above hold no weights.
    return type(layer).__module__.startswith("keras.")


def unsupported_reason(layer):
    """Why `layer` cannot be pruned, for error messages."""
    if isinstance(layer, keras.layers.RNN):
        cells = [type(c).__name__ for c in _rnn_cells(layer)
                 if not (hasattr(c, "get_prunable_weights")
                         or isinstance(c, _RNN_CELLS))]
        return (f"RNN layer {layer.name!r} has cells {cells} that are neither "
                "SimpleRNNCell/GRUCell/LSTMCell nor a PrunableLayer")
    return (f"layer {layer.name!r} of type {type(layer).__name__} holds weights "
            "keras-egf does not know how to prune (give it "
            "get_prunable_weights(), see keras_egf.PrunableLayer, or "
            "register it with keras_egf.register_prunable_layer)")
