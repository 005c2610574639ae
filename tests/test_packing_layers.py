"""keras_egf.packing.layers (PackedDense): config round trip, save/load,
argument checks and per-member penalties (the packed model it makes is in
test_packing_members.py)."""

import keras
import numpy as np
import pytest

from keras_egf.packing import PackedDense


def _layer(**kw):
    options = dict(members=3, units=4, use_bias=True,
                   kernel_regularizer=keras.regularizers.L2(0.01), name="hidden_0")
    options.update(kw)
    return PackedDense(**options)


def test_config_round_trip_and_serialization():
    layer = _layer()
    config = layer.get_config()
    assert config["members"] == 3 and config["units"] == 4 and config["use_bias"]
    again = PackedDense.from_config(config)
    assert again.get_config() == config
    assert isinstance(again.kernel_regularizer, keras.regularizers.L2)
    assert again.kernel_regularizer.l2 == pytest.approx(0.01)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(revived, PackedDense) and revived.get_config() == config
    plain = PackedDense(2, 5, use_bias=False)
    assert PackedDense.from_config(plain.get_config()).kernel_regularizer is None


def test_call_is_each_members_dense_and_save_load(tmp_path):
    rng = np.random.default_rng(0)
    inputs = keras.Input((3, 6))
    model = keras.Model(inputs, _layer()(inputs))
    layer = model.layers[-1]
    kernel = rng.normal(size=(3, 6, 4)).astype("float32")
    bias = rng.normal(size=(3, 4)).astype("float32")
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    x = rng.normal(size=(5, 3, 6)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x))
    assert out.shape == (5, 3, 4)
    for k in range(3):
        np.testing.assert_allclose(out[:, k], x[:, k] @ kernel[k] + bias[k], rtol=1e-5)
    path = str(tmp_path / "packed.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), out, rtol=1e-6)


def test_a_training_step_and_member_penalties():
    layer = _layer(kernel_regularizer=keras.regularizers.L2(0.5))
    inputs = keras.Input((3, 6))
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 6, 4)).astype("float32")
    layer.kernel.assign(kernel)
    penalties = keras.ops.convert_to_numpy(layer.member_penalties())
    np.testing.assert_allclose(penalties, 0.5 * (kernel ** 2).sum(axis=(1, 2)), rtol=1e-5)
    assert layer.losses == []  # per member, not one total in the model's losses
    model.compile(optimizer="sgd", loss="mse")
    before = layer.kernel.numpy().copy()
    model.train_on_batch(rng.normal(size=(8, 3, 6)), rng.normal(size=(8, 3, 4)))
    assert np.abs(layer.kernel.numpy() - before).max() > 0
    unregularized = PackedDense(2, 3)
    unregularized.build((None, 2, 5))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(unregularized.member_penalties()), np.zeros(2))


@pytest.mark.parametrize("kw, match", [
    (dict(members=0), "members=0"), (dict(units=-1), "units=-1"),
    (dict(members=True), "members=True"), (dict(units=2.5), "units=2.5")])
def test_arguments_are_checked(kw, match):
    with pytest.raises(ValueError, match=f"`{match.split('=')[0]}` must be"):
        _layer(**kw)
    with pytest.raises(ValueError, match=match):
        _layer(**kw)


def test_input_without_the_member_axis_is_refused():
    with pytest.raises(ValueError, match="input_shape"):
        _layer()(keras.Input((3, 6, 2)))
    with pytest.raises(ValueError, match="members=3"):
        _layer()(keras.Input((2, 6)))
