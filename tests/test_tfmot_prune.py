"""TFMOT's prune_test.py, ported to keras-egf.

Source: tensorflow_model_optimization/python/core/sparsity/keras/
prune_test.py (PruneTest), case by case, same layers, models, parameters
and expected values; tf-keras translated to Keras 3, TFMOT's calls to
keras-egf's (`ke.prune_low_magnitude`, `ke.strip_pruning`,
`ke.prune_scope`).

keras-egf has no `PruneLowMagnitude` wrapper: a pruned layer is the layer's
own class, masked (same name, config and weights), so TFMOT's
`_validate_pruned_layer` (a wrapper around the very layer) checks here that
the pruned layer is a masked instance of the original's class with its
name and the pruning options; weightless layers are not wrapped at all
(returned as they are, or rebuilt unchanged inside a model).
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_egf as ke
from keras_egf import layers as layers_lib
from keras_egf import masking
from keras_egf import pruning
from tfmot_test_utils import build_simple_dense_model

layers = keras.layers


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


class TestSubclassedModel(keras.Model):
    """A model subclass."""

    __test__ = False  # not a pytest class

    def __init__(self):
        """A test subclass model with one dense layer."""
        super(TestSubclassedModel, self).__init__(name="test_model")
        self.layer1 = keras.layers.Dense(10, activation="relu")

    def call(self, inputs):
        return self.layer1(inputs)


class CustomPrunableLayer(layers.Dense, ke.PrunableLayer):

    def get_prunable_weights(self):
        return [self.kernel]


class CustomNonPrunableLayer(layers.Dense):
    pass


PARAMS = {
    "pruning_schedule": pruning.ConstantSparsity(0.5, 0),
    "block_size": (1, 1),
    "block_pooling_type": "AVG",
}


def _layers():
    """TFMOT's setUp layers."""
    return {
        "keras_prunable_layer": layers.Dense(10),  # Supports pruning
        "keras_non_prunable_layer": layers.Dropout(0.4),  # not applicable
        "keras_unsupported_layer": layers.ConvLSTM2D(2, (5, 5)),
        "custom_prunable_layer": CustomPrunableLayer(10),
        "custom_non_prunable_layer": CustomNonPrunableLayer(10),
    }


def _build_pruned_layer_model(layer):
    model = keras.Sequential()
    pruned_layer = ke.prune_low_magnitude(layer, **PARAMS)
    model.add(pruned_layer)
    model.build(input_shape=(10, 1))
    return pruned_layer


def _validate_pruned_layer(original_layer, pruned_layer):
    """TFMOT: a PruneLowMagnitude wrapping `original_layer`, carrying the
    params. keras-egf: the masked version of the original's class, same
    name, carrying the params; a layer without prunable weights is not
    wrapped (same class, no mask, no options)."""
    assert isinstance(pruned_layer, type(original_layer))
    assert pruned_layer.name == original_layer.name
    if not masking.is_masked(pruned_layer):
        # No wrapper on weightless layers (TFMOT wraps them too).
        assert type(pruned_layer) is type(original_layer)
        assert not hasattr(pruned_layer, "pruning_schedule")
        return
    assert PARAMS["pruning_schedule"] == pruned_layer.pruning_schedule
    assert PARAMS["block_size"] == pruned_layer.block_size
    assert PARAMS["block_pooling_type"] == pruned_layer.block_pooling_type


def _count_pruned_layers(model):
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            count += _count_pruned_layers(layer)
        elif masking.is_masked(layer):
            count += 1
    return count


def test_tfmot_testPruneKerasPrunableLayer():
    keras_prunable_layer = _layers()["keras_prunable_layer"]
    pruned_layer = _build_pruned_layer_model(keras_prunable_layer)

    _validate_pruned_layer(keras_prunable_layer, pruned_layer)
    assert masking.is_masked(pruned_layer)


def test_tfmot_testPruneKerasNonPrunableLayer():
    keras_non_prunable_layer = _layers()["keras_non_prunable_layer"]
    pruned_layer = _build_pruned_layer_model(keras_non_prunable_layer)

    _validate_pruned_layer(keras_non_prunable_layer, pruned_layer)
    # No wrapper: the Dropout layer itself comes back, pruned in nothing
    # (TFMOT: a wrapper whose layer has get_prunable_weights() == []).
    assert pruned_layer is keras_non_prunable_layer
    assert layers_lib.layer_entries(pruned_layer) == []


def test_tfmot_testPruneKerasUnsupportedLayer():
    with pytest.raises(ValueError):
        ke.prune_low_magnitude(_layers()["keras_unsupported_layer"], **PARAMS)


def test_tfmot_testPruneCustomPrunableLayer():
    custom_prunable_layer = _layers()["custom_prunable_layer"]
    pruned_layer = _build_pruned_layer_model(custom_prunable_layer)

    _validate_pruned_layer(custom_prunable_layer, pruned_layer)
    assert [pruned_layer.kernel] == pruned_layer.get_prunable_weights()


def test_tfmot_testPruneCustomNonPrunableLayer():
    # keras-egf prunes subclasses of registered layers as their base class
    # (keras_egf/prunable.py: a Dense subclass counts as Dense); TFMOT only
    # knows exact classes and raises.
    custom_non_prunable_layer = _layers()["custom_non_prunable_layer"]
    pruned_layer = ke.prune_low_magnitude(custom_non_prunable_layer, **PARAMS)
    _validate_pruned_layer(custom_non_prunable_layer, pruned_layer)
    assert masking.is_masked(pruned_layer)


def test_tfmot_testPruneModelValidLayersSuccessful():
    l = _layers()
    model = keras.Sequential([
        l["keras_prunable_layer"],
        l["keras_non_prunable_layer"],
        l["custom_prunable_layer"],
    ])
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    pruned_model.build(input_shape=(1, 28, 28, 1))

    assert len(model.layers) == len(pruned_model.layers)
    for layer, pruned_layer in zip(model.layers, pruned_model.layers):
        _validate_pruned_layer(layer, pruned_layer)
    # The Dropout is not wrapped: [masked, plain, masked].
    assert [masking.is_masked(x) for x in pruned_model.layers] \
        == [True, False, True]


def test_tfmot_testPruneModelUnsupportedKerasLayerRaisesError():
    l = _layers()
    # keras-egf leaves a layer it cannot prune dense inside a model, with a
    # warning naming it (TFMOT raises).
    model = keras.Sequential([
        l["keras_prunable_layer"], l["keras_non_prunable_layer"],
        l["custom_prunable_layer"], l["keras_unsupported_layer"],
    ])
    with pytest.warns(UserWarning, match="left dense.*conv_lstm2d"):
        pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    assert [type(x).__name__ for x in pruned_model.layers] == [
        "MaskedDense", "Dropout", "MaskedCustomPrunableLayer", "ConvLSTM2D"]


def test_tfmot_testPruneModelCustomNonPrunableLayerRaisesError():
    l = _layers()
    # keras-egf prunes a Dense subclass as a Dense (TFMOT raises).
    model = keras.Sequential([
        l["keras_prunable_layer"], l["keras_non_prunable_layer"],
        l["custom_prunable_layer"], l["custom_non_prunable_layer"],
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left dense
        pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    assert [masking.is_masked(x) for x in pruned_model.layers] \
        == [True, False, True, True]


def test_tfmot_testPruneModelDoesNotWrapAlreadyWrappedLayer():
    model = keras.Sequential(
        [layers.Dense(10),
         ke.prune_low_magnitude(layers.Dense(10), **PARAMS)])
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    pruned_model.build(input_shape=(10, 1))

    assert len(model.layers) == len(pruned_model.layers)
    _validate_pruned_layer(model.layers[0], pruned_model.layers[0])
    # Second layer is used as-is since it's already a pruned layer:
    # keras-egf clones the model (no wrapper to reuse), so it is a copy of
    # the same masked class (masked once), not the object.
    second = pruned_model.layers[1]
    assert second is not model.layers[1]
    assert type(second) is type(model.layers[1])
    assert second.name == model.layers[1].name
    assert len(ke.prunable_layers(pruned_model)) == 2


def test_tfmot_testPruneValidLayersListSuccessful():
    l = _layers()
    model_layers = [
        l["keras_prunable_layer"],
        l["keras_non_prunable_layer"],
        l["custom_prunable_layer"],
    ]
    pruned_layers = ke.prune_low_magnitude(model_layers, **PARAMS)

    assert len(model_layers) == len(pruned_layers)
    for layer, pruned_layer in zip(model_layers, pruned_layers):
        _validate_pruned_layer(layer, pruned_layer)
    # The Dropout comes back as it is (TFMOT: wrapped).
    assert pruned_layers[1] is model_layers[1]


def test_tfmot_testPruneInferenceWorks_PruningStepCallbackNotRequired():
    model = ke.prune_low_magnitude(
        keras.Sequential([
            layers.Dense(10, activation="relu", input_shape=(100,)),
            layers.Dense(2, activation="sigmoid"),
        ]), **PARAMS)

    model.compile(
        loss=keras.losses.categorical_crossentropy,
        optimizer=keras.optimizers.SGD(),
        metrics=["accuracy"])

    model.predict(np.random.rand(1000, 100), verbose=0)
    model.evaluate(
        np.random.rand(1000, 100),
        keras.utils.to_categorical(np.random.randint(2, size=(1000, 1))),
        verbose=0)


def test_tfmot_testPruneSequentialModel():
    # No InputLayer
    model = keras.Sequential([
        layers.Dense(10),
        layers.Dense(10),
    ])
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    assert _count_pruned_layers(pruned_model) == 2

    # With InputLayer
    model = keras.Sequential([
        layers.Dense(10, input_shape=(10,)),
        layers.Dense(10),
    ])
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    assert _count_pruned_layers(pruned_model) == 2


def test_tfmot_testPruneSequentialModelPreservesBuiltState():
    # No InputLayer
    model = keras.Sequential([
        layers.Dense(10),
        layers.Dense(10),
    ])
    assert model.built is False
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    assert model.built is False

    # Test built state preserves across serialization
    with ke.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
        assert loaded_model.built is False

    # With InputLayer
    model = keras.Sequential([
        layers.Dense(10, input_shape=(10,)),
        layers.Dense(10),
    ])
    assert model.built is True
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    assert model.built is True

    # Test built state preserves across serialization
    with ke.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built is True


def _two_input_model():
    i1 = keras.Input(shape=(10,))
    i2 = keras.Input(shape=(10,))
    x1 = layers.Dense(10)(i1)
    x2 = layers.Dense(10)(i2)
    outputs = layers.Add()([x1, x2])
    return keras.Model(inputs=[i1, i2], outputs=outputs)


def test_tfmot_testPruneFunctionalModel():
    model = _two_input_model()
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    # The Add layer is not wrapped (TFMOT counts 3 wrappers).
    assert _count_pruned_layers(pruned_model) == 2


def test_tfmot_testPruneFunctionalModelWithLayerReused():
    # The model reuses the Dense() layer. Make sure it's only pruned once.
    inp = keras.Input(shape=(10,))
    dense_layer = layers.Dense(10)
    x = dense_layer(inp)
    x = dense_layer(x)
    model = keras.Model(inputs=[inp], outputs=[x])
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    assert _count_pruned_layers(pruned_model) == 1


def test_tfmot_testPruneFunctionalModelPreservesBuiltState():
    model = _two_input_model()
    assert model.built is True
    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    assert model.built is True

    # Test built state preserves across serialization
    with ke.prune_scope():
        loaded_model = keras.models.model_from_json(pruned_model.to_json())
    assert loaded_model.built is True


def test_tfmot_testPruneModelRecursively():
    internal_model = keras.Sequential(
        [keras.layers.Dense(10, input_shape=(10,))])
    original_model = keras.Sequential([
        internal_model,
        layers.Dense(10),
    ])
    pruned_model = ke.prune_low_magnitude(original_model, **PARAMS)
    assert _count_pruned_layers(pruned_model) == 2


def test_tfmot_testPruneSubclassModel():
    model = TestSubclassedModel()
    # keras-egf's own message (TFMOT: '`prune_low_magnitude` can only prune
    # an object of the following types: ... You passed an object of type:
    # TestSubclassedModel.').
    with pytest.raises(ValueError,
                       match="subclassed models are not supported"):
        _ = ke.prune_low_magnitude(model, **PARAMS)


def test_tfmot_testPruneMiscObject():
    model = object()
    # keras-egf's own message (TFMOT's: '... You passed an object of type:
    # object.').
    with pytest.raises(ValueError, match="Received an object of type object$"):
        _ = ke.prune_low_magnitude(model, **PARAMS)


def test_tfmot_testStripPruningSequentialModel():
    model = keras.Sequential([
        layers.Dense(10),
        layers.Dense(10),
    ])

    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    stripped_model = ke.strip_pruning(pruned_model)
    assert _count_pruned_layers(stripped_model) == 0
    assert model.get_config() == stripped_model.get_config()


def test_tfmot_testStripPruningFunctionalModel():
    model = _two_input_model()

    pruned_model = ke.prune_low_magnitude(model, **PARAMS)
    stripped_model = ke.strip_pruning(pruned_model)

    assert _count_pruned_layers(stripped_model) == 0
    assert model.get_config() == stripped_model.get_config()


def test_tfmot_testPruneScope_NeededForKerasModel(tmp_path):
    model = build_simple_dense_model()
    pruned_model = ke.prune_low_magnitude(model)

    keras_model = str(tmp_path / "model.h5")
    pruned_model.save(keras_model)

    # `import keras_egf` registers every masked class: loading needs no
    # prune_scope (TFMOT raises ValueError without it).
    loaded = keras.models.load_model(keras_model)
    assert _count_pruned_layers(loaded) == 2

    # works with `prune_scope`
    with ke.prune_scope():
        keras.models.load_model(keras_model)


def test_tfmot_testPruneScope_NotNeededForKerasCheckpoint(tmp_path):
    model = build_simple_dense_model()
    pruned_model = ke.prune_low_magnitude(model)

    # Keras 3 weight files end in .weights.h5 (TFMOT: .h5).
    keras_weights = str(tmp_path / "model.weights.h5")
    pruned_model.save_weights(keras_weights)

    same_architecture_model = build_simple_dense_model()
    same_architecture_model = ke.prune_low_magnitude(same_architecture_model)

    # would error if `prune_scope` was needed.
    same_architecture_model.load_weights(keras_weights)


def test_tfmot_testPruneScope_NotNeededForTFCheckpoint(tmp_path):
    model = build_simple_dense_model()
    pruned_model = ke.prune_low_magnitude(model)

    # Keras 3's save_weights writes .weights.h5 only: the TF checkpoint
    # format is tf.train.Checkpoint's.
    tf_weights = tf.train.Checkpoint(model=pruned_model).save(
        str(tmp_path / "ckpt"))

    same_architecture_model = build_simple_dense_model()
    same_architecture_model = ke.prune_low_magnitude(same_architecture_model)

    # would error if `prune_scope` was needed.
    status = tf.train.Checkpoint(model=same_architecture_model).restore(
        tf_weights)
    status.assert_existing_objects_matched()


def test_tfmot_testPruneScope_NotNeededForTF2SavedModel(tmp_path):
    model = build_simple_dense_model()
    pruned_model = ke.prune_low_magnitude(model)

    saved_model_dir = str(tmp_path / "saved_model")

    tf.saved_model.save(pruned_model, saved_model_dir)

    # would error if `prune_scope` was needed.
    tf.saved_model.load(saved_model_dir)


def test_tfmot_testPruneScope_NeededForTF1SavedModel():
    pytest.skip("TF1 only (keras.experimental.export_saved_model, "
                "tf.compat.v1): no meaning in Keras 3; TFMOT returns early "
                "under TF2 too")
