"""TFMOT's pruning_wrapper_test.py, ported to keras-egf.

Source: tensorflow_model_optimization/python/core/sparsity/keras/
pruning_wrapper_test.py (PruningWrapperTest), case by case, same layers and
expected values. keras-egf has no `PruneLowMagnitude` wrapper:
`prune_low_magnitude(layer)` returns the layer's own class, masked
(MaskedDense, MaskedConv2D, Masked<Class>), weightless and normalisation
layers as they are. TFMOT's `pruning_vars` (one (weight, mask, threshold)
per prunable weight) are keras-egf's masked entries of
`keras_egf.prunable_layers(model)`.
"""

import keras
import pytest
import tensorflow as tf

import keras_egf as ke
from keras_egf import layers as layers_lib
from keras_egf import pruning

layers = keras.layers


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


class CustomLayer(keras.layers.Layer):
    """A custom layer which is not prunable."""

    def __init__(self, input_dim=16, output_dim=32):
        super(CustomLayer, self).__init__()
        self.weight = self.add_weight(
            shape=(input_dim, output_dim),
            initializer="random_normal",
            trainable=True)
        # TFMOT: shape=(output_dim); Keras 3 wants a tuple.
        self.bias = self.add_weight(
            shape=(output_dim,),
            initializer="zeros",
            trainable=True)

    def call(self, inputs):
        return tf.matmul(inputs, self.weight) + self.bias


class CustomLayerPrunable(CustomLayer):
    """A prunable custom layer.

    The layer is same with the CustomLayer except it has a
    'get_prunable_weights' attribute.
    """

    def get_prunable_weights(self):
        return [self.weight, self.bias]


PARAMS = {
    "pruning_schedule": pruning.ConstantSparsity(0.5, 0),
    "block_size": (1, 1),
    "block_pooling_type": "AVG",
}


def Prune(layer, **params):  # noqa: N802 (TFMOT's name)
    """TFMOT's `PruneLowMagnitude(layer, **params)`: keras-egf's masked
    layer."""
    return ke.prune_low_magnitude(layer, **params)


def _mask_count(model):
    """TFMOT: sum of len(layer.pruning_vars) over the model's wrappers."""
    return len([e for e in ke.prunable_layers(model)
                if layers_lib.is_masked_layer(e)])


def test_tfmot_testPruneWrapperAllowsOnlyValidPoolingType():
    layer = layers.Dense(10)
    with pytest.raises(ValueError):
        Prune(layer, block_pooling_type="MIN")

    Prune(layer, block_pooling_type="AVG")
    Prune(layer, block_pooling_type="MAX")


def test_tfmot_testDense():
    model = keras.Sequential()
    model.add(Prune(layers.Dense(10), **PARAMS))
    model.build(input_shape=(10, 1))

    assert _mask_count(model) == 1


def test_tfmot_testEmbedding():
    model = keras.Sequential()
    # TFMOT passes input_shape=(10,) to the wrapper; model.build gives it.
    model.add(Prune(layers.Embedding(10, 10), **PARAMS))
    model.build(input_shape=(10, 1))

    assert _mask_count(model) == 1


def test_tfmot_testConv2D():
    model = keras.Sequential()
    model.add(Prune(layers.Conv2D(4, (3, 3)), **PARAMS))
    model.build(input_shape=(1, 16, 16, 4))

    assert _mask_count(model) == 1


def test_tfmot_testPruneModel():
    model = keras.Sequential()
    model.add(Prune(layers.Conv2D(32, 5)))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2))))
    model.add(Prune(layers.Conv2D(64, 5)))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2))))
    model.add(Prune(layers.Flatten()))
    model.add(Prune(layers.Dense(1024)))
    model.add(Prune(layers.Dropout(0.4)))
    model.add(Prune(layers.Dense(10)))
    model.build(input_shape=(1, 28, 28, 1))

    assert _mask_count(model) == 4

    # Test serialization (the masked classes are registered: no
    # custom_objects needed).
    model_config = model.get_config()
    pruned_model = model.__class__.from_config(model_config)
    pruned_model_config = pruned_model.get_config()
    # New serialization format includes `build_config` in all layers
    for layer in model_config["layers"]:
        layer.pop("build_config", None)
    for layer in pruned_model_config["layers"]:
        layer.pop("build_config", None)
    assert model_config == pruned_model_config


def test_tfmot_testCustomLayerNonPrunable():
    layer = CustomLayer(input_dim=16, output_dim=32)
    inputs = keras.layers.Input(shape=(16,))
    _ = layer(inputs)
    with pytest.raises(ValueError):
        Prune(layer, block_pooling_type="MAX")


def test_tfmot_testCustomLayerPrunable():
    layer = CustomLayerPrunable(input_dim=16, output_dim=32)
    inputs = keras.layers.Input(shape=(16,))
    _ = layer(inputs)
    pruned_layer = Prune(layer, block_pooling_type="MAX")
    # keras-egf keeps the layer's name (no wrapper): TFMOT prefixes it with
    # 'prune_low_magnitude_'.
    assert pruned_layer.name == "custom_layer_prunable"
    assert isinstance(pruned_layer, CustomLayerPrunable)


def test_tfmot_testCollectPrunableLayers():
    model = keras.Sequential()
    # TFMOT: input_shape=(None, 4) on the RNN layer; Keras 3: keras.Input.
    model.add(keras.Input((None, 4)))
    lstm_layer = keras.layers.RNN(
        layers.LSTMCell(4, dropout=0.5, recurrent_dropout=0.5))
    model.add(Prune(lstm_layer))
    model.add(Prune(layers.BatchNormalization()))
    model.add(Prune(layers.Flatten()))
    model.add(Prune(layers.Dense(10)))
    model.add(Prune(layers.Dropout(0.5)))
    # TFMOT then calls model.build(input_shape=(1, 4)), which tf-keras
    # overrides with the RNN's input_shape; Keras 3 built it from the Input
    # (and refuses another shape).
    assert model.built

    # keras-egf lists prunable weights, not wrappers: TFMOT counts 5 wrapped
    # layers (weightless and BatchNormalization ones included); keras-egf
    # the LSTM's kernel and recurrent kernel and the Dense kernel.
    assert len(ke.prunable_layers(model)) == 3
    assert _mask_count(model) == 3


def test_tfmot_testConv3DWeightNotPrunedWithSparsityMbyN():
    layer = keras.layers.Conv3D(2, 3)
    # TFMOT: Input(shape=(4, 28, 28, 28, 1)), tf-keras taking the 4 as a
    # second batch dimension; Keras 3 convolutions take one.
    inputs = keras.layers.Input(shape=(28, 28, 28, 1), batch_size=4)
    _ = layer(inputs)
    model = keras.Sequential()
    model.add(Prune(layer, sparsity_m_by_n=(2, 4)))

    pruned_layers = ke.prunable_layers(model)

    assert len(pruned_layers) == 1
    # keras-egf applies M-by-N along the input axis of weights of any rank
    # >= 2 (keras_egf/pruning/structured.py): the Conv3D kernel gets a mask,
    # where TFMOT gives it no pruning variables.
    assert layers_lib.is_masked_layer(pruned_layers[0])
    assert pruned_layers[0].layer.sparsity_m_by_n == (2, 4)
