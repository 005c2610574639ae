"""TFMOT's test helpers, ported to keras-egf: the model builders and sparsity
assertions of tensorflow_model_optimization/python/core/sparsity/keras/
test_utils.py and the ModelCompare / build_simple_dense_model helpers of
tensorflow_model_optimization/python/core/keras/test_utils.py.

Translation: TFMOT walks the `PruneLowMagnitude` wrappers of a model and
their `layer.get_prunable_weights()`; keras-egf has no wrapper, so the
same checks walk `keras_egf.prunable_layers(model)`, one entry per prunable
weight tensor, keeping those that carry a mask (the pruned ones).
"""

import keras
import numpy as np

import keras_egf as ke
from keras_egf import layers as layers_lib

l = keras.layers


def build_simple_dense_model():
    # TFMOT: Dense(8, activation='relu', input_shape=(10,)); Keras 3 spells
    # the input shape with keras.Input.
    return keras.Sequential([
        keras.Input((10,)),
        l.Dense(8, activation="relu"),
        l.Dense(5, activation="softmax"),
    ])


def _build_mnist_layer_list():
    return [
        l.Conv2D(32, 5, padding="same", activation="relu",
                 input_shape=(28, 28, 1)),
        l.MaxPooling2D((2, 2), (2, 2), padding="same"),
        l.BatchNormalization(),
        l.Conv2D(64, 5, padding="same", activation="relu"),
        l.MaxPooling2D((2, 2), (2, 2), padding="same"),
        l.Flatten(),
        l.Dense(1024, activation="relu"),
        l.Dropout(0.4),
        l.Dense(10, activation="softmax"),
    ]


def _build_mnist_sequential_model():
    return keras.Sequential(_build_mnist_layer_list())


def _build_mnist_functional_model():
    inp = keras.Input(shape=(28, 28, 1))
    x = l.Conv2D(32, 5, padding="same", activation="relu")(inp)
    x = l.MaxPooling2D((2, 2), (2, 2), padding="same")(x)
    x = l.BatchNormalization()(x)
    x = l.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = l.MaxPooling2D((2, 2), (2, 2), padding="same")(x)
    x = l.Flatten()(x)
    x = l.Dense(1024, activation="relu")(x)
    x = l.Dropout(0.4)(x)
    out = l.Dense(10, activation="softmax")(x)
    return keras.Model([inp], [out])


def _build_mnist_layerwise_pruned_model(pruning_params):
    if pruning_params is None:
        raise ValueError("pruning_params should be provided.")
    # TFMOT passes input_shape=(28, 28, 1) to prune_low_magnitude (its
    # wrapper's kwargs); keras-egf's prune_low_magnitude returns the layer
    # itself, so the input shape is a keras.Input.
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        ke.prune_low_magnitude(
            l.Conv2D(32, 5, padding="same", activation="relu"),
            **pruning_params),
        l.MaxPooling2D((2, 2), (2, 2), padding="same"),
        l.BatchNormalization(),
        ke.prune_low_magnitude(
            l.Conv2D(64, 5, padding="same", activation="relu"),
            **pruning_params),
        l.MaxPooling2D((2, 2), (2, 2), padding="same"),
        l.Flatten(),
        ke.prune_low_magnitude(l.Dense(1024, activation="relu"),
                               **pruning_params),
        l.Dropout(0.4),
        ke.prune_low_magnitude(l.Dense(10, activation="softmax"),
                               **pruning_params),
    ])


def build_mnist_model(model_type, pruning_params=None):
    builders = {
        "sequential": _build_mnist_sequential_model,
        "functional": _build_mnist_functional_model,
        "layer_list": _build_mnist_layer_list,
        "layer_wise": lambda: _build_mnist_layerwise_pruned_model(
            pruning_params),
    }
    return builders[model_type]()


def model_type_keys():
    return ["sequential", "functional", "layer_list", "layer_wise"]


def save_restore_keras_h5(model, folder):
    """TFMOT's _save_restore_keras_model: .h5, loaded inside prune_scope."""
    path = str(folder / "model.h5")
    keras.models.save_model(model, path)
    with ke.prune_scope():
        return keras.models.load_model(path)


def save_restore_keras_v3(model, folder):
    """TFMOT's _save_restore_tf_model (SavedModel, save_format='tf'): Keras 3
    saves models in its .keras format instead (SavedModel is export-only)."""
    path = str(folder / "model.keras")
    keras.models.save_model(model, path)
    with ke.prune_scope():
        return keras.models.load_model(path)


def save_restore_fns():
    return [save_restore_keras_h5, save_restore_keras_v3]


# Assertion/Sparsity Verification functions.


def get_sparsity(weights):
    weights = np.asarray(weights)
    return 1.0 - np.count_nonzero(weights) / float(weights.size)


def pruned_weights(model):
    """The variables TFMOT's checks visit: every prunable weight that
    keras-egf masks (TFMOT: `get_prunable_weights()` of every wrapper)."""
    return [e.kernel for e in ke.prunable_layers(model)
            if layers_lib.is_masked_layer(e)]


def assert_model_sparsity(sparsity, model, rtol=1e-6, atol=1e-6):
    for weight in pruned_weights(model):
        np.testing.assert_allclose(
            get_sparsity(keras.ops.convert_to_numpy(weight)), sparsity,
            rtol=rtol, atol=atol, err_msg=weight.path)


def is_model_sparsity_not(sparsity, model):
    """True if some pruned weight does not have `sparsity`."""
    for weight in pruned_weights(model):
        if sparsity != get_sparsity(keras.ops.convert_to_numpy(weight)):
            return True
    return False


def assert_model_sparsity_m_by_n(model, m_by_n=(2, 4)):
    for weight in pruned_weights(model):
        assert ke.is_pruned_m_by_n(keras.ops.convert_to_numpy(weight),
                                   m_by_n=m_by_n), weight.path


# ModelCompare (core/keras/test_utils.py): trainable weights only.


def assert_weights_same_objects(model1, model2):
    assert len(model1.trainable_weights) == len(model2.trainable_weights)
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights):
        assert id(w1) == id(w2)


def assert_weights_different_objects(model1, model2):
    assert len(model1.trainable_weights) == len(model2.trainable_weights)
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights):
        assert id(w1) != id(w2)


def assert_weights_same_values(model1, model2):
    assert len(model1.trainable_weights) == len(model2.trainable_weights)
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights):
        np.testing.assert_allclose(w1.numpy(), w2.numpy(), rtol=1e-6,
                                   atol=1e-6)


def assert_weights_different_values(model1, model2):
    assert len(model1.trainable_weights) == len(model2.trainable_weights)
    for w1, w2 in zip(model1.trainable_weights, model2.trainable_weights):
        assert not np.allclose(w1.numpy(), w2.numpy(), rtol=1e-6, atol=1e-6)
