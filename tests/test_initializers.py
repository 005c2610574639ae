"""keras_egf.initializers: the dense twin's fans give exactly the truncated
normal Keras's HeNormal / GlorotNormal draw for those fans (the sparse
layers' std is checked in test_capacity.py and test_architectures.py)."""

import keras
import numpy as np
import pytest

from keras_egf import initializers


@pytest.mark.parametrize("scheme, keras_init", [
    ("he", keras.initializers.HeNormal), ("glorot", keras.initializers.GlorotNormal)])
def test_fan_scaled_normal_is_keras_init_for_the_given_fans(scheme, keras_init):
    ours = initializers.fan_scaled_normal(scheme, 300, 100, seed=4)((300, 100))
    theirs = keras_init(seed=4)((300, 100))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours),
                                  keras.ops.convert_to_numpy(theirs))


def test_schemes_by_activation_and_checks():
    assert [initializers.scheme_for_activation(a) for a in
            ("relu", "prelu", "elu", "swish", "srelu", "sigmoid", "tanh")] == \
        ["he"] * 5 + ["glorot"] * 2
    assert initializers.fan_stddev("he", 8, 2) == pytest.approx(0.5)
    assert initializers.fan_stddev("glorot", 6, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="scheme='lecun'"):
        initializers.fan_stddev("lecun", 8, 2)
    with pytest.raises(ValueError, match="fan_in=0"):
        initializers.fan_stddev("he", 0, 2)
