"""TFMOT's prune_registry_test.py, ported case by case to keras-egf.

Source: tensorflow/model-optimization,
tensorflow_model_optimization/python/core/sparsity/keras/prune_registry_test.py
(class PruneRegistryTest).

Translation: TFMOT's `PruneRegistry.supports(layer)` is
`keras_egf.prunable.supports(layer)`. `PruneRegistry.make_prunable(layer)`
patches a `get_prunable_weights` method onto the layer; keras-egf never
patches a layer: `prunable_variables(layer)` says which weights are
prunable, and `prune_low_magnitude(layer)` (which refuses unsupported layers
with ValueError, as make_prunable does) gives its masked copy, one mask per
prunable weight. Both are checked against TFMOT's expected weights.
"""

import keras
import pytest

import keras_egf as ke
from keras_egf import prunable

layers = keras.layers


class CustomLayer(layers.Layer):
    pass


class CustomLayerFromPrunableLayer(layers.Dense):
    pass


# Registered (Keras 3 needs it to rebuild a layer holding a custom cell
# from its config, as prune_low_magnitude does).
@keras.saving.register_keras_serializable(package="tfmot_registry_test")
class MinimalRNNCell(keras.layers.Layer):

    def __init__(self, units, **kwargs):
        self.units = units
        self.state_size = units
        super().__init__(**kwargs)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units),
            initializer="uniform",
            name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            initializer="uniform",
            name="recurrent_kernel")
        self.built = True

    def call(self, inputs, states):
        prev_output = states[0]
        # keras.backend.dot in tf-keras.
        h = keras.ops.matmul(inputs, self.kernel)
        output = h + keras.ops.matmul(prev_output, self.recurrent_kernel)
        return output, [output]


@keras.saving.register_keras_serializable(package="tfmot_registry_test")
class MinimalRNNCellPrunable(MinimalRNNCell, ke.PrunableLayer):

    def get_prunable_weights(self):
        return [self.kernel, self.recurrent_kernel]


def _same(actual, expected):
    """The same variables, in order (identity: Keras 3 variables compare
    elementwise with ==)."""
    assert len(actual) == len(expected), (actual, expected)
    for a, e in zip(actual, expected):
        assert a is e, (a.path, e.path)


def _masked_weights(masked, input_shape):
    """Builds a masked layer; returns the weights its masks are on."""
    keras.Sequential([masked]).build(input_shape=input_shape)
    entries = ke.prunable_layers(keras.Sequential([masked]))
    for entry in entries:
        assert tuple(entry.mask.shape) == tuple(entry.kernel.shape)
    return [entry.kernel for entry in entries]


def _supported_layers():
    return [
        # Supports basic Keras layers even though it is not prunable.
        pytest.param(layers.Dense(10), id="Dense"),
        pytest.param(layers.Conv2D(10, 5), id="Conv2D"),
        pytest.param(layers.Dropout(0.5), id="Dropout"),
        # Supports specific layers from experimental or compat_v1. Keras 3:
        # SyncBatchNormalization is BatchNormalization(synchronized=True),
        # preprocessing.Rescaling is layers.Rescaling (TFMOT passes the
        # class itself; a layer is passed here), and there are no compat.v1
        # layers: its BatchNormalization is the one BatchNormalization.
        pytest.param(layers.BatchNormalization(synchronized=True),
                     id="SyncBatchNormalization"),
        pytest.param(layers.Rescaling(1.0 / 255), id="Rescaling"),
        pytest.param(layers.BatchNormalization(),
                     id="compat_v1_BatchNormalization"),
        # Supports Keras RNN Layers with prunable cells.
        pytest.param(layers.LSTM(10), id="LSTM"),
        pytest.param(layers.GRU(10), id="GRU"),
        pytest.param(layers.SimpleRNN(10), id="SimpleRNN"),
        pytest.param(layers.RNN(layers.LSTMCell(10)), id="RNN_LSTMCell"),
        pytest.param(layers.RNN([
            layers.LSTMCell(10),
            layers.GRUCell(10),
            layers.SimpleRNNCell(10)
        ]), id="RNN_stacked_cells"),
        pytest.param(keras.layers.RNN(MinimalRNNCellPrunable(32)),
                     id="RNN_MinimalRNNCellPrunable"),
    ]


@pytest.mark.parametrize("layer", _supported_layers())
def test_tfmot_supports_layer(layer):
    assert prunable.supports(layer)


@pytest.mark.parametrize("layer, tfmot_supports", [
    # Not support a few built-in keras layers.
    pytest.param(layers.ConvLSTM2D(2, (5, 5)), False, id="ConvLSTM2D"),
    # Not support RNN layers with unknown cell
    pytest.param(keras.layers.RNN(MinimalRNNCell(32)), False,
                 id="RNN_MinimalRNNCell"),
    # Not support Custom layers, even though inherited from prunable layer.
    pytest.param(CustomLayer(), False, id="CustomLayer"),
    pytest.param(CustomLayerFromPrunableLayer(10), True,
                 id="CustomLayerFromPrunableLayer"),
])
def test_tfmot_does_not_support_layer(layer, tfmot_supports):
    # Deliberate difference (CustomLayerFromPrunableLayer): keras-egf's
    # registry covers subclasses of registered classes (a Dense subclass
    # is pruned as a Dense); TFMOT matches the exact class only.
    assert prunable.supports(layer) is tfmot_supports


def test_tfmot_make_prunable_raises_error_for_keras_unsupported_layer():
    with pytest.raises(ValueError):
        ke.prune_low_magnitude(layers.ConvLSTM2D(2, (5, 5)))


def test_tfmot_make_prunable_raises_error_for_custom_layer():
    with pytest.raises(ValueError):
        ke.prune_low_magnitude(CustomLayer())


def test_tfmot_make_prunable_raises_error_for_custom_layer_inherited_from_prunable_layer():
    # Deliberate difference: a Dense subclass is pruned as a Dense (its
    # kernel), as its masked subclass, where TFMOT raises ValueError.
    layer = CustomLayerFromPrunableLayer(10)
    masked = ke.prune_low_magnitude(layer)
    assert isinstance(masked, CustomLayerFromPrunableLayer)
    assert type(masked).__name__ == "MaskedCustomLayerFromPrunableLayer"
    _same(_masked_weights(masked, (10, 1)), [masked.kernel])


def test_tfmot_make_prunable_works_on_keras_prunable_layer():
    layer = layers.Dense(10)
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    masked = ke.prune_low_magnitude(layer)
    # Required since build method sets up the layer weights.
    keras.Sequential([layer]).build(input_shape=(10, 1))

    _same(prunable.prunable_variables(layer), [layer.kernel])
    _same(_masked_weights(masked, (10, 1)), [masked.kernel])


def test_tfmot_make_prunable_works_on_keras_non_prunable_layer():
    layer = layers.Dropout(0.5)
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    masked = ke.prune_low_magnitude(layer)

    assert prunable.prunable_variables(layer) == []
    assert masked is layer  # nothing to mask: the layer itself, unchanged


def test_tfmot_make_prunable_works_on_keras_rnn_layer():
    layer = layers.LSTM(10)
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    masked = ke.prune_low_magnitude(layer)
    keras.Sequential([layer]).build(input_shape=(2, 3, 4))

    _same(prunable.prunable_variables(layer),
          [layer.cell.kernel, layer.cell.recurrent_kernel])
    _same(_masked_weights(masked, (2, 3, 4)),
          [masked.cell.kernel, masked.cell.recurrent_kernel])


def test_tfmot_make_prunable_works_on_keras_rnn_layer_with_rnn_cells_params():
    cell1 = layers.LSTMCell(10)
    cell2 = layers.GRUCell(5)
    layer = layers.RNN([cell1, cell2])
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    masked = ke.prune_low_magnitude(layer)
    keras.Sequential([layer]).build(input_shape=(2, 3, 4))

    expected_weights = [
        cell1.kernel, cell1.recurrent_kernel, cell2.kernel,
        cell2.recurrent_kernel
    ]
    _same(prunable.prunable_variables(layer), expected_weights)
    m1, m2 = masked.cell.cells
    _same(_masked_weights(masked, (2, 3, 4)),
          [m1.kernel, m1.recurrent_kernel, m2.kernel, m2.recurrent_kernel])


def test_tfmot_make_prunable_works_on_keras_rnn_layer_with_prunable_cell():
    cell1 = layers.LSTMCell(10)
    cell2 = MinimalRNNCellPrunable(5)
    layer = layers.RNN([cell1, cell2])
    with pytest.raises(AttributeError):
        layer.get_prunable_weights()

    masked = ke.prune_low_magnitude(layer)
    keras.Sequential([layer]).build(input_shape=(2, 3, 4))

    expected_weights = [
        cell1.kernel, cell1.recurrent_kernel, cell2.kernel,
        cell2.recurrent_kernel
    ]
    _same(prunable.prunable_variables(layer), expected_weights)
    m1, m2 = masked.cell.cells
    assert isinstance(m2, MinimalRNNCellPrunable)
    _same(_masked_weights(masked, (2, 3, 4)),
          [m1.kernel, m1.recurrent_kernel, m2.kernel, m2.recurrent_kernel])


def test_tfmot_make_prunable_raises_error_on_rnn_layers_unsupported_cell():
    with pytest.raises(ValueError):
        ke.prune_low_magnitude(
            layers.RNN([layers.LSTMCell(10),
                        MinimalRNNCell(5)]))
