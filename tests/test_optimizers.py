"""Optimizers by name (keras_egf/optimizers.py): the classes and arguments
the grids' names stand for, and the registry."""

import keras
import pytest

from keras_egf import optimizers


@pytest.mark.parametrize("name, cls, momentum", [
    ("sgd", keras.optimizers.SGD, 0.0),
    ("momentum", keras.optimizers.SGD, 0.9),
    ("adagrad", keras.optimizers.Adagrad, None),
    ("rmsprop", keras.optimizers.RMSprop, None),
    ("adam", keras.optimizers.Adam, None),
    ("adamw", keras.optimizers.AdamW, None),
])
def test_each_name_makes_its_keras_optimizer(name, cls, momentum):
    optimizer = optimizers.make_optimizer(name, 0.05, weight_decay=0.01)
    assert type(optimizer) is cls
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    if momentum is not None:
        assert optimizer.momentum == momentum
    # Only AdamW's decoupled decay reads weight_decay (L2 is the models').
    expected_decay = 0.01 if name == "adamw" else None
    assert optimizer.weight_decay == expected_decay


def test_names_in_the_grids_order():
    assert list(optimizers.OPTIMIZERS) == [
        "sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"]
    assert optimizers.make_optimizer("adamw", 0.1).weight_decay == 0.0


def test_unknown_optimizer_lists_the_registered_ones_and_how_to_add_one():
    with pytest.raises(ValueError, match=r"^Unknown optimizer 'adamax'\. Supported: "
                       r"\['sgd', .*'adamw'\]\. Register one with "
                       r"keras_egf\.optimizers\.register_optimizer\.$"):
        optimizers.make_optimizer("adamax", 0.1)


def test_register_optimizer():
    optimizers.register_optimizer(
        "lion_like", lambda lr, weight_decay: keras.optimizers.Lion(lr))
    try:
        assert isinstance(optimizers.make_optimizer("lion_like", 1e-4),
                          keras.optimizers.Lion)
        with pytest.raises(ValueError, match="already registered"):
            optimizers.register_optimizer("lion_like", lambda lr, wd: None)
    finally:
        optimizers.OPTIMIZERS.unregister("lion_like")
    with pytest.raises(ValueError, match="Received: factory=None"):
        optimizers.register_optimizer("bad", None)
