"""`run_layer_test`: the checks every layer keras-egf defines passes, in the
spirit of Keras's own `TestCase.run_layer_test` (keras/src/testing/
test_case.py): config round trip, `.keras` save/load, a training step and
mixed precision, with what masks add (masks at 50 % survive saving, a
masked weight stays exactly 0 through a training step, masks stay in their
own dtype under mixed precision).

    from layer_testing import run_layer_test

    run_layer_test(ke.MaskedDense, {"units": 4}, input_shape=(2, 3))
"""

import os
import tempfile

import keras
import numpy as np

import keras_egf as ke
from keras_egf import layers as layers_lib


def run_layer_test(layer_cls, init_kwargs, input_shape, input_dtype="float32",
                   custom_objects=None, run_save_check=True,
                   run_training_check=True, run_mixed_precision_check=True):
    """Runs the checks on `layer_cls(**init_kwargs)` called on a batch of
    `input_shape` (batch axis included; integer inputs are drawn in
    [0, 10)); returns the layer of the float32 model.

    - get_config / from_config, and Keras serialisation, round trip;
    - in a `MaskedModel` with its masks at 50 % (when it has any), a `.keras`
      file loads with the same masks and predictions (`run_save_check`);
    - one Adam step (`train_on_batch`) moves the trainable weights and keeps
      every pruned weight exactly 0 (`run_training_check`);
    - under mixed_float16 the layer computes in float16, keeps float32
      variables and its masks' dtype, and a loss-scaled step keeps pruned
      weights exactly 0 (`run_mixed_precision_check`).
    """
    _check_config_round_trip(layer_cls, init_kwargs, custom_objects)
    x = _inputs(input_shape, input_dtype)
    model, layer = _pruned_model(layer_cls, init_kwargs, x)
    if run_save_check:
        _check_save_and_load(model, x, custom_objects)
    if run_training_check:
        _check_training_step(model, x)
    if run_mixed_precision_check:
        _check_mixed_precision(layer_cls, init_kwargs, x)
    return layer


def _check_config_round_trip(layer_cls, init_kwargs, custom_objects):
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer), custom_objects=custom_objects)
    assert type(revived) is layer_cls and revived.get_config() == config


def _inputs(input_shape, input_dtype):
    rng = np.random.default_rng(0)
    if "int" in input_dtype:
        return rng.integers(0, 10, input_shape).astype(input_dtype)
    return rng.normal(size=input_shape).astype(input_dtype)


def _pruned_model(layer_cls, init_kwargs, x):
    """A MaskedModel around one layer, masks (if any) at 50 %."""
    keras.utils.set_random_seed(0)
    layer = layer_cls(**init_kwargs)
    inputs = keras.Input(x.shape[1:], dtype=str(x.dtype))
    model = ke.MaskedModel(inputs, layer(inputs))
    if _masked(model):
        ke.prune(model, 0.5, seed=0)
    return model, layer


def _masked(model):
    return [e for e in ke.prunable_layers(model) if layers_lib.is_masked_layer(e)]


def _check_save_and_load(model, x, custom_objects):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, custom_objects=custom_objects)
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    for name, mask in ke.get_masks(model).items():
        np.testing.assert_array_equal(ke.get_masks(loaded)[name], mask)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def _train_one_step(model, x):
    """One Adam step on an MSE to random targets; returns the trainable
    weights before it."""
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    y = np.random.default_rng(1).normal(
        size=keras.ops.shape(model(x))).astype("float32")
    before = [np.array(w.numpy()) for w in model.trainable_weights]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    return before


def _check_pruned_weights_zero(model):
    for entry in _masked(model):
        mask = keras.ops.convert_to_numpy(entry.mask)
        kernel = keras.ops.convert_to_numpy(entry.kernel)
        assert (mask == 0).any(), entry.name
        assert np.all(kernel[mask == 0] == 0.0), entry.name


def _check_training_step(model, x):
    before = _train_one_step(model, x)
    moved = [not np.array_equal(b, w.numpy())
             for b, w in zip(before, model.trainable_weights)]
    assert any(moved), "one training step changed no trainable weight"
    _check_pruned_weights_zero(model)


def _check_mixed_precision(layer_cls, init_kwargs, x):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, layer = _pruned_model(layer_cls, init_kwargs, x)
        assert layer.compute_dtype == "float16"
        assert keras.backend.standardize_dtype(model(x).dtype) == "float16"
        for variable in layer.trainable_weights:
            assert variable.dtype == "float32", variable.path
        for entry in _masked(model):
            assert entry.mask.dtype == layer.mask_dtype, entry.name
        _train_one_step(model, x)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        _check_pruned_weights_zero(model)
    finally:
        keras.mixed_precision.set_global_policy(previous)
