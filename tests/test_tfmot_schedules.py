"""TFMOT's pruning_schedule_test.py, ported case by case to keras-egf.

Source: tensorflow/model-optimization,
tensorflow_model_optimization/python/core/sparsity/keras/pruning_schedule_test.py
(classes PruningScheduleTest, ConstantSparsityTest, PolynomialDecayTest).
Same inputs and expected values; TFMOT's steps are tf.Variables and so are
these (keras-egf's schedules take any integer-like step). TFMOT's
`assertAllClose` tolerances (rtol=atol=1e-6) are kept.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_egf import pruning

SCHEDULE_TYPES = ["constant_sparsity", "polynomial_decay"]
CUSTOM_OBJECTS = {"ConstantSparsity": pruning.ConstantSparsity,
                  "PolynomialDecay": pruning.PolynomialDecay}


def _construct_pruning_schedule(schedule_type, begin_step, end_step,
                                frequency=10):
    # TFMOT's helper: default sparsities, only the steps vary.
    if schedule_type == "constant_sparsity":
        return pruning.ConstantSparsity(0.5, begin_step, end_step, frequency)
    return pruning.PolynomialDecay(0.2, 0.8, begin_step, end_step, 3, frequency)


def _close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


# PruningScheduleTest: argument validation.

@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_tfmot_begin_step_greater_than_equals_zero(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, -1, 1000)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, -5, 1000)

    _construct_pruning_schedule(schedule_type, 0, 1000)
    _construct_pruning_schedule(schedule_type, 1, 1000)
    _construct_pruning_schedule(schedule_type, 100, 1000)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_tfmot_end_step_greater_than_equals_zero(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, -5)

    _construct_pruning_schedule(schedule_type, 0, 0)
    _construct_pruning_schedule(schedule_type, 0, 1)
    _construct_pruning_schedule(schedule_type, 0, 100)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_tfmot_end_step_greater_than_equals_begin_step(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 5)

    _construct_pruning_schedule(schedule_type, 10, 10)
    _construct_pruning_schedule(schedule_type, 10, 20)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_tfmot_frequency_is_positive(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, 0)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, -1)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, -5)

    _construct_pruning_schedule(schedule_type, 10, 1000, 1)
    _construct_pruning_schedule(schedule_type, 10, 1000, 10)


def _validate_sparsity(schedule_construct_fn):
    # Should not be < 0.0
    for bad in (-0.001, -1.0, -10.0):
        with pytest.raises(ValueError):
            schedule_construct_fn(bad)
    # Should not be >= 1.0
    for bad in (1.0, 10.0):
        with pytest.raises(ValueError):
            schedule_construct_fn(bad)

    for good in (0.0, 0.001, 0.5, 0.99):
        schedule_construct_fn(good)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_tfmot_sparsity_value_is_valid(schedule_type):
    if schedule_type == "constant_sparsity":
        _validate_sparsity(lambda s: pruning.ConstantSparsity(s, 0))
    else:
        _validate_sparsity(lambda s: pruning.PolynomialDecay(s, 0.8, 0, 10))
        _validate_sparsity(lambda s: pruning.PolynomialDecay(0.2, s, 0, 10))


# PruningScheduleTest: begin_step, end_step and frequency used correctly.

@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_tfmot_prunes_only_in_begin_end_step_range(schedule_type):
    sparsity = _construct_pruning_schedule(schedule_type, 100, 200, 1)

    # Before begin step
    assert not sparsity(tf.Variable(90))[0]
    assert not sparsity(tf.Variable(99))[0]
    # In range
    assert sparsity(tf.Variable(100))[0]
    assert sparsity(tf.Variable(110))[0]
    assert sparsity(tf.Variable(200))[0]
    # After end step
    assert not sparsity(tf.Variable(201))[0]
    assert not sparsity(tf.Variable(210))[0]


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_tfmot_only_prunes_at_valid_frequency_steps(schedule_type):
    sparsity = _construct_pruning_schedule(schedule_type, 100, 200, 10)

    assert not sparsity(tf.Variable(109))[0]
    assert not sparsity(tf.Variable(111))[0]

    assert sparsity(tf.Variable(100))[0]
    assert sparsity(tf.Variable(110))[0]


# ConstantSparsityTest.

def test_tfmot_constant_sparsity_prunes_forever_if_end_step_is_negative_one():
    sparsity = pruning.ConstantSparsity(0.5, 0, -1, 10)

    assert sparsity(tf.Variable(10000))[0]
    assert sparsity(tf.Variable(100000000))[0]

    _close(sparsity(tf.Variable(10000))[1], 0.5)
    _close(sparsity(tf.Variable(100000000))[1], 0.5)


def test_tfmot_constant_sparsity_prunes_with_constant_sparsity():
    sparsity = pruning.ConstantSparsity(0.5, 100, 200, 10)

    _close(sparsity(tf.Variable(100))[1], 0.5)
    _close(sparsity(tf.Variable(110))[1], 0.5)
    _close(sparsity(tf.Variable(200))[1], 0.5)


def _check_serialize_deserialize(sparsity, expected_config):
    config = sparsity.get_config()
    # Deliberate difference: get_config is the flat Keras 3 config; TFMOT's
    # returns the {"class_name", "config"} envelope, built here from it.
    assert config == expected_config
    envelope = {"class_name": type(sparsity).__name__, "config": config}
    sparsity_deserialized = keras.saving.deserialize_keras_object(
        envelope, custom_objects=CUSTOM_OBJECTS)

    assert type(sparsity_deserialized) is type(sparsity)
    assert sparsity.__dict__ == sparsity_deserialized.__dict__
    # And Keras 3's own round trip (no custom_objects: registered classes).
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(sparsity))
    assert sparsity.__dict__ == restored.__dict__


def test_tfmot_constant_sparsity_serialize_deserialize():
    _check_serialize_deserialize(
        pruning.ConstantSparsity(0.7, 10, 20, 10),
        {"target_sparsity": 0.7, "begin_step": 10, "end_step": 20,
         "frequency": 10})


# PolynomialDecayTest.

def test_tfmot_polynomial_decay_raises_error_if_end_step_is_negative():
    with pytest.raises(ValueError):
        pruning.PolynomialDecay(0.4, 0.8, 10, -1)


def test_tfmot_polynomial_decay_prunes_correctly():
    sparsity = pruning.PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)

    # TFMOT: "These values were generated using tf.polynomial_decay with the
    # same params in a colab to verify."
    _close(sparsity(tf.Variable(100))[1], 0.2)
    _close(sparsity(tf.Variable(102))[1], 0.4928)
    _close(sparsity(tf.Variable(105))[1], 0.725)
    _close(sparsity(tf.Variable(110))[1], 0.8)


def test_tfmot_polynomial_decay_serialize_deserialize():
    _check_serialize_deserialize(
        pruning.PolynomialDecay(0.2, 0.6, 10, 20, 5, 10),
        {"initial_sparsity": 0.2, "final_sparsity": 0.6, "power": 5,
         "begin_step": 10, "end_step": 20, "frequency": 10})
