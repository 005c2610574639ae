"""keras_egf.activations: SReLU's values by hand and its config round trip
(its masked-layer test is in test_layers.py, its training in
test_architectures.py and test_measures_on_grid_settings.py)."""

import keras
import numpy as np

import keras_egf as ke


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
