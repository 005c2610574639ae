import keras
import numpy as np
import pytest

import keras_egf as ke


@pytest.mark.parametrize("activation", list(ke.ACTIVATIONS))
def test_build_mlp_every_activation_trains(activation):
    model = ke.build_mlp((4, 4), [8, 8], 3, activation=activation,
                         batch_norm=True, skip_connections=True,
                         weight_decay=1e-3, seed=0)
    ke.prune(model, 0.5, seed=0)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(16, 4, 4)).astype("float32")
    history = model.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    assert np.isfinite(history.history["egf_2"][0])
    names = [l.name for l in model.layers]
    assert "skip_1" in names and "batch_norm_0" in names
    assert len(model.losses) == 3  # one L2 term per kernel


def test_plain_and_masked_layers():
    assert all(type(l) is keras.layers.Dense for l in
               ke.prunable_layers(ke.build_mlp((5,), [4], 2, masked=False)))
    assert all(isinstance(l, ke.MaskedDense) for l in
               ke.prunable_layers(ke.build_mlp((5,), [4], 2)))


@pytest.mark.parametrize("kwargs, named", [
    ({"hidden_widths": [0]}, "width=0"),
    ({"hidden_widths": []}, "depth=0"),
    ({"activation": "tanhh"}, "'tanhh'"),
    ({"hidden_widths": [4, 5], "skip_connections": True}, "hidden_widths"),
    ({"weight_decay": -1.0}, "weight_decay=-1.0"),
])
def test_bad_arguments_named(kwargs, named):
    args = {"input_shape": (5,), "hidden_widths": [4], "num_classes": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=named):
        ke.build_mlp(**args)


def test_srelu_values_by_hand():
    layer = ke.SReLU(t_left_initializer=keras.initializers.Constant(-1.0),
                     a_left_initializer=keras.initializers.Constant(0.5),
                     t_right_initializer=keras.initializers.Constant(3.0),
                     a_right_initializer=keras.initializers.Constant(2.0))
    x = np.array([[-3.0, -1.0, 0.5, 2.0, 4.0]], "float32")
    # t_l = -1, t_r = t_l + |3| = 2.
    expected = [[-1 + 0.5 * (-3 + 1), -1 + 0.5 * 0, 0.5, 2.0, 2 + 2 * (4 - 2)]]
    np.testing.assert_allclose(layer(x).numpy(), expected)
    assert len(layer.trainable_weights) == 4
    assert layer.t_left.shape == (5,)
    clone = ke.SReLU.from_config(layer.get_config())
    np.testing.assert_allclose(clone(x).numpy(), expected)
