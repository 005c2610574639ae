"""keras_egf.pruning.mask_updates: the drop-fraction schedules (their drop
and grow rules are checked through DynamicSparsity in
test_pruning_dynamic.py, against RigL's, JaxPruner's and SET's code)."""

import keras
import pytest

from keras_egf.pruning import mask_updates


def test_drop_fraction_schedules_serialise():
    cosine = mask_updates.CosineDropFraction(0.3, end_step=100)
    assert cosine(0) == pytest.approx(0.3) and cosine(50) == pytest.approx(0.15)
    assert cosine(100) == cosine(150) == 0.0
    constant = mask_updates.ConstantDropFraction(0.3, end_step=100)
    assert constant(99) == 0.3 and constant(100) == 0.0
    for schedule in (cosine, constant):
        config = keras.saving.serialize_keras_object(schedule)
        assert keras.saving.deserialize_keras_object(config) == schedule
        assert type(schedule).from_config(schedule.get_config()) == schedule
    with pytest.raises(ValueError, match="end_step=0"):
        mask_updates.CosineDropFraction(0.3, end_step=0)
    with pytest.raises(ValueError, match="drop_fraction=0"):
        mask_updates.ConstantDropFraction(0, end_step=10)
