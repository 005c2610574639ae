"""TFMOT's pruning_callbacks_test.py, ported case by case to keras-egf.

Source: tensorflow/model-optimization,
tensorflow_model_optimization/python/core/sparsity/keras/pruning_callbacks_test.py
(class PruneCallbacksTest). Same model (TFMOT's
`test_utils.build_simple_dense_model`), data, optimizer and loss.

TFMOT keeps the pruning step in a `pruning_step` variable of each wrapper
(-1 until training starts, then k after the k-th batch). keras-egf has no
wrapper: `UpdatePruningStep` counts the steps and calls each masked layer's
schedule with them. The step a layer is at is observed here as the steps
its schedule is called with (`_record_steps`: the same schedule config,
recording its calls).
"""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_egf as ke
from keras_egf import pruning

_BATCH_SIZE = 20


class _RecordingConstantSparsity(pruning.ConstantSparsity):
    """ConstantSparsity that records the steps it is called with."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = []

    def __call__(self, step):
        self.steps.append(int(step))
        return super().__call__(step)


def _record_steps(model):
    """Gives each masked layer a recording copy of its schedule; returns
    [(layer, recorder)] in order."""
    recorders = []
    for layer in ke.prunable_layers(model):
        schedule = layer.pruning_schedule
        assert schedule == pruning.ConstantSparsity(0.5, 0)  # TFMOT's default
        recorder = _RecordingConstantSparsity(**schedule.get_config())
        layer.pruning_schedule = recorder
        recorders.append((layer, recorder))
    return recorders


def _pruning_step(recorder):
    """TFMOT's pruning_step: the last step the layer's schedule saw, -1
    when training never started."""
    return recorder.steps[-1] if recorder.steps else -1


def _assert_logs_exist(log_dir):
    assert os.listdir(log_dir)


def build_simple_dense_model():
    # TFMOT's keras test_utils.build_simple_dense_model, in Keras 3.
    return keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(5, activation="softmax"),
    ])


def _pruned_model_setup(custom_training_loop=False):
    pruned_model = ke.prune_low_magnitude(build_simple_dense_model())

    x_train = np.random.rand(_BATCH_SIZE, 10)
    y_train = keras.utils.to_categorical(
        np.random.randint(5, size=(_BATCH_SIZE, 1)), 5)

    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.SGD()

    if custom_training_loop:
        return pruned_model, loss, optimizer, x_train, y_train
    pruned_model.compile(loss=loss, optimizer=optimizer, metrics=["accuracy"])
    return pruned_model, x_train, y_train


def test_tfmot_update_pruning_steps_and_logs_summaries():
    log_dir = tempfile.mkdtemp()
    pruned_model, x_train, y_train = _pruned_model_setup()
    # keras-egf's MaskedModel is functional: layers[0] is its InputLayer
    # (TFMOT's pruned Sequential has none), so the two Dense layers are
    # taken from prunable_layers.
    (layer0, steps0), (layer1, steps1) = _record_steps(pruned_model)
    pruned_model.fit(
        x_train,
        y_train,
        batch_size=_BATCH_SIZE,
        epochs=3,
        callbacks=[
            pruning.UpdatePruningStep(),
            pruning.PruningSummaries(log_dir=log_dir),
        ],
        verbose=0)

    assert _pruning_step(steps0) == 3
    assert _pruning_step(steps1) == 3
    # Pruning steps 1, 2, 3; PruningSummaries also reads the schedules for
    # its target_sparsity scalar, at each epoch's start (step 0 first).
    assert sorted(set(steps0.steps)) == sorted(set(steps1.steps)) == [0, 1, 2, 3]

    _assert_logs_exist(log_dir)


def test_tfmot_update_pruning_steps_and_logs_summaries_custom_training_loop():
    log_dir = tempfile.mkdtemp()
    pruned_model, loss, optimizer, x_train, y_train = _pruned_model_setup(
        custom_training_loop=True)
    (layer0, steps0), (layer1, steps1) = _record_steps(pruned_model)

    unused_arg = -1

    step_callback = pruning.UpdatePruningStep()
    log_callback = pruning.PruningSummaries(log_dir=log_dir)
    step_callback.set_model(pruned_model)
    log_callback.set_model(pruned_model)
    pruned_model.optimizer = optimizer

    step_callback.on_train_begin()
    for _ in range(3):
        log_callback.on_epoch_begin(epoch=unused_arg)
        # only one batch given batch_size = 20 and input shape.
        step_callback.on_train_batch_begin(batch=unused_arg)
        inp = np.reshape(x_train, [_BATCH_SIZE, 10])
        with tf.GradientTape() as tape:
            logits = pruned_model(inp, training=True)
            loss_value = loss(y_train, logits)
            grads = tape.gradient(loss_value, pruned_model.trainable_variables)
            optimizer.apply_gradients(
                zip(grads, pruned_model.trainable_variables))
        step_callback.on_epoch_end(batch=unused_arg)

    assert _pruning_step(steps0) == 3
    assert _pruning_step(steps1) == 3
    _assert_logs_exist(log_dir)


def test_tfmot_update_pruning_steps_and_logs_summaries_run_inference():
    pruned_model, _, _, x_train, _ = _pruned_model_setup(
        custom_training_loop=True)
    recorders = _record_steps(pruned_model)
    model_output = pruned_model(x_train)
    del model_output

    # Deliberate difference: no wrapper, so no per-layer pruning_step
    # variable at -1; inference never calls a schedule nor touches a mask.
    for layer, recorder in recorders:
        assert _pruning_step(recorder) == -1
        assert not hasattr(layer, "pruning_step")
        assert np.all(layer.mask.numpy() == 1)


def test_tfmot_prune_training_raises_error_pruning_step_callback_missing():
    pruned_model, x_train, y_train = _pruned_model_setup()

    # Throws an error since UpdatePruningStep is missing. Deliberate
    # difference: ValueError from fit's check before training, where TFMOT's
    # wrapper raises InvalidArgumentError from a graph assertion.
    with pytest.raises(ValueError, match="UpdatePruningStep"):
        pruned_model.fit(x_train, y_train, verbose=0)


def test_tfmot_prune_training_loop_raises_error_pruning_step_callback_missing_custom_training_loop():
    pruned_model, _, _, x_train, _ = _pruned_model_setup(
        custom_training_loop=True)
    recorders = _record_steps(pruned_model)

    # Deliberate difference: TFMOT's wrapper asserts its pruning_step >= 0 in
    # every training forward pass (InvalidArgumentError without the
    # callback); keras-egf has no step variable in the layers, so only fit
    # checks for UpdatePruningStep. The forward pass runs, nothing pruned.
    inp = np.reshape(x_train, [_BATCH_SIZE, 10])  # original shape: [10].
    with tf.GradientTape():
        pruned_model(inp, training=True)
    for layer, recorder in recorders:
        assert _pruning_step(recorder) == -1
        assert np.all(layer.mask.numpy() == 1)


def test_tfmot_pruning_summaries_raises_error_log_dir_not_non_empty_string():
    with pytest.raises(ValueError):
        pruning.PruningSummaries(log_dir="")

    with pytest.raises(ValueError):
        pruning.PruningSummaries(log_dir=None)

    with pytest.raises(ValueError):
        pruning.PruningSummaries(log_dir=object())
