"""keras_egf's warnings name the user's line: `warnings.warn` attributed to
the first caller outside the library (keras_egf._warnings.warn), never the
root logger."""

import logging
import warnings

import keras
import pytest

import keras_egf as ke
from keras_egf import pruning
from keras_egf._warnings import warn


def _ours(record, text):
    found = [w for w in record if text in str(w.message)]
    assert found, [str(w.message) for w in record]
    return found


def test_warn_points_past_the_library_to_its_caller():
    with pytest.warns(UserWarning, match="from a test") as record:
        warn("from a test")  # called from outside keras_egf: this line
    assert [(w.filename, w.category) for w in record] == [(__file__, UserWarning)]


def test_dense_equivalent_mismatch_is_a_warning_at_the_callers_line(caplog):
    model = ke.build_mlp((30,), [20, 20], 4, seed=0)
    ke.prune(model, 0.9, distribution="erk", seed=0)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        twin = ke.dense_equivalent(model)
    assert not twin.exact
    assert not [r for r in caplog.records if "dense twin" in r.getMessage()]
    ours = _ours(record, "active sparse weights but its dense twin has")
    assert len(ours) == sum(not r.exact for r in twin.report)
    assert {(w.filename, w.category) for w in ours} == {(__file__, UserWarning)}


def _with_an_unprunable_layer():
    return keras.Sequential([keras.Input((4, 8, 8, 1)), keras.layers.ConvLSTM2D(2, 3),
                             keras.layers.Flatten(), keras.layers.Dense(3)])


@pytest.mark.parametrize("prune", [
    lambda m: ke.prune_low_magnitude(m, pruning.ConstantSparsity(0.5, 0)),
    lambda m: ke.prune(m, 0.5, seed=0),  # a plain model: a masked copy
], ids=["prune_low_magnitude", "prune"])
def test_a_layer_left_dense_is_named_at_the_callers_line(prune):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        prune(_with_an_unprunable_layer())
    ours = _ours(record, "left dense")
    assert {w.filename for w in ours} == {__file__}, [(w.filename, w.lineno) for w in ours]
