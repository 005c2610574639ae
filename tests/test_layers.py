import keras
import numpy as np
import pytest

import keras_egf as ke
from reference import to_numpy
from layer_testing import run_layer_test


def _mask(shape, seed=0, density=0.3):
    return (np.random.default_rng(seed).random(shape) < density).astype("float32")


def test_masked_dense_forward_uses_kernel_times_mask():
    layer = ke.MaskedDense(4, activation="relu")
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    layer(x)
    kernel = layer.kernel.numpy().copy()
    mask = _mask((6, 4))
    layer.set_mask(mask)
    # set_mask zeroes the pruned kernel entries exactly.
    assert np.all(layer.kernel.numpy()[mask == 0] == 0.0)
    np.testing.assert_array_equal(layer.kernel.numpy()[mask == 1], kernel[mask == 1])
    expected = np.maximum(x @ (kernel * mask) + layer.bias.numpy(), 0)
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)
    assert layer.active_weights == int(mask.sum())
    np.testing.assert_allclose(layer.sparsity, 1 - mask.mean())


def test_mask_is_used_even_if_kernel_is_overwritten():
    layer = ke.MaskedDense(3)
    x = np.ones((2, 5), "float32")
    layer(x)
    mask = _mask((5, 3), seed=1)
    layer.set_mask(mask)
    layer.kernel.assign(np.ones((5, 3), "float32"))
    np.testing.assert_allclose(to_numpy(layer(x)), x @ mask + layer.bias.numpy())


def test_masked_conv2d_matches_conv2d_on_effective_kernel():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    masked = ke.MaskedConv2D(5, 3, padding="same")
    masked(x)
    mask = _mask(masked.kernel.shape, seed=2)
    masked.set_mask(mask)
    plain = keras.layers.Conv2D(5, 3, padding="same")
    plain(x)
    plain.set_weights([masked.kernel.numpy() * mask, masked.bias.numpy()])
    np.testing.assert_allclose(to_numpy(masked(x)), to_numpy(plain(x)), rtol=1e-5, atol=1e-5)


def test_mask_is_non_trainable_and_config_round_trips():
    layer = ke.MaskedDense(7, activation="tanh", use_bias=False, name="m")
    layer.build((None, 3))
    assert any(w is layer.mask for w in layer.non_trainable_weights)
    assert not any(w is layer.mask for w in layer.trainable_weights)
    clone = ke.MaskedDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    conv = ke.MaskedConv2D(4, (3, 2), strides=2)
    assert ke.MaskedConv2D.from_config(conv.get_config()).get_config() == conv.get_config()


@pytest.mark.parametrize("bad", [{"units": 0}, {"units": -3}])
def test_bad_units(bad):
    with pytest.raises(ValueError, match=f"units={bad['units']}"):
        ke.MaskedDense(**bad)


def test_bad_mask_shape_and_values():
    layer = ke.MaskedDense(2)
    layer.build((None, 3))
    with pytest.raises(ValueError, match=r"mask.shape=\(2, 3\)"):
        layer.set_mask(np.ones((2, 3)))
    with pytest.raises(ValueError, match="0.5"):
        layer.set_mask(np.full((3, 2), 0.5))


def test_keras_file_round_trip_keeps_masks_and_predictions(tmp_path):
    inputs = keras.Input((6, 6, 2))
    x = ke.MaskedConv2D(3, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = ke.MaskedDense(8, activation="relu")(x)
    x = ke.SReLU()(x)
    outputs = ke.MaskedDense(4)(x)
    model = ke.MaskedModel(inputs, outputs, track_gradient_flow=False)
    ke.prune(model, 0.7, seed=3)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, ke.MaskedModel)
    assert loaded.track_gradient_flow is False
    for name, mask in ke.get_masks(model).items():
        np.testing.assert_array_equal(ke.get_masks(loaded)[name], mask)
    x = np.random.default_rng(0).normal(size=(5, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)


def _mask_dtype_model(mask_dtype, policy="float32"):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((10,))
    x = ke.MaskedDense(16, activation="relu", mask_dtype=mask_dtype,
                       dtype=policy, name="h")(inputs)
    x = keras.layers.Reshape((4, 4, 1))(x)
    x = ke.MaskedConv2D(3, 2, mask_dtype=mask_dtype, dtype=policy, name="c")(x)
    x = keras.layers.Flatten()(x)
    outputs = ke.MaskedDense(3, mask_dtype=mask_dtype, dtype=policy, name="o")(x)
    model = ke.MaskedModel(inputs, outputs)
    for i, layer in enumerate(ke.prunable_layers(model)):
        layer.set_mask(_mask(tuple(layer.kernel.shape), seed=i, density=0.5))
    return model


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_int8_masks_store_a_quarter_and_train_bit_identically(policy):
    x = np.random.default_rng(1).normal(size=(64, 10)).astype("float32")
    y = np.random.default_rng(2).integers(0, 3, 64)
    runs = {}
    for mask_dtype in ("int8", "float32"):
        model = _mask_dtype_model(mask_dtype, policy)
        layers = ke.prunable_layers(model)
        assert {l.mask.dtype for l in layers} == {mask_dtype}
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        runs[mask_dtype] = (model.predict(x, verbose=0), history.history,
                            [l.kernel.numpy() for l in layers], layers)
    (p8, h8, k8, layers8), (p32, h32, k32, _) = runs["int8"], runs["float32"]
    np.testing.assert_array_equal(p8, p32)
    assert h8 == h32  # loss and every gf/EGF, exactly
    for a, b, layer in zip(k8, k32, layers8):
        np.testing.assert_array_equal(a, b)
        assert np.all(a[layer.mask.numpy() == 0] == 0.0)
    mask_bytes = sum(l.mask.numpy().nbytes for l in layers8)
    kernel_bytes = sum(l.kernel.numpy().nbytes for l in layers8)
    assert mask_bytes * 4 == kernel_bytes


def test_int8_mask_survives_keras_round_trip_and_bad_dtype_is_named(tmp_path):
    model = _mask_dtype_model("int8")
    x = np.random.default_rng(1).normal(size=(4, 10)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(ke.prunable_layers(model), ke.prunable_layers(loaded)):
        assert b.mask.dtype == "int8" and b.mask_dtype == "int8"
        np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  loaded.predict(x, verbose=0))
    with pytest.raises(ValueError, match="mask_dtype='float16'"):
        ke.MaskedDense(3, mask_dtype="float16")


@pytest.mark.parametrize("layer_cls, init_kwargs, input_shape", [
    (ke.MaskedDense, {"units": 4, "activation": "relu"}, (3, 5)),
    (ke.MaskedDense, {"units": 3, "use_bias": False, "mask_dtype": "float32",
                      "pruning_schedule": ke.pruning.ConstantSparsity(0.5, 0)}, (2, 4, 6)),
    (ke.MaskedConv2D, {"filters": 3, "kernel_size": 3, "padding": "same"}, (2, 6, 6, 2)),
    (ke.MaskedConv2D, {"filters": 2, "kernel_size": (3, 2), "strides": 2,
                       "sparsity_m_by_n": (2, 4)}, (2, 7, 7, 4)),
    (ke.SReLU, {}, (4, 5)),
], ids=["MaskedDense", "MaskedDense_options", "MaskedConv2D", "MaskedConv2D_m_by_n",
        "SReLU"])
def test_layer_test(layer_cls, init_kwargs, input_shape):
    """Every layer keras-egf defines passes the shared layer test (config,
    .keras save/load, a training step, mixed precision)."""
    run_layer_test(layer_cls, init_kwargs, input_shape)
