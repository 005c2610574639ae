"""Initialisers whose variance comes from a given (dense) fan-in/fan-out.

SC-SDC (docs/method.md §3) initialises a sparse layer's active weights
from its dense twin's distribution: He normal (ReLU-like activations) or
Glorot normal (others), with the dense layer's fans, not the sparse layer's.
`fan_scaled_normal` returns the very truncated normal that
`keras.initializers.HeNormal` / `GlorotNormal` draw for those fans.
"""

import math

import keras

RELU_LIKE = ("relu", "prelu", "elu", "swish", "srelu")
# stddev of a unit normal truncated to [-2, 2], as in VarianceScaling.
_TRUNCATION_STDDEV = 0.87962566103423978


def scheme_for_activation(activation):
    """"he" for ReLU-like activations, "glorot" otherwise."""
    return "he" if activation in RELU_LIKE else "glorot"


def fan_stddev(scheme, fan_in, fan_out):
    """Target standard deviation of He or Glorot init for given fans."""
    if fan_in <= 0 or fan_out <= 0:
        raise ValueError(
            f"Fans must be positive. Received: fan_in={fan_in}, "
            f"fan_out={fan_out}"
        )
    if scheme == "he":
        return math.sqrt(2.0 / fan_in)
    if scheme == "glorot":
        return math.sqrt(2.0 / (fan_in + fan_out))
    raise ValueError(
        f"scheme must be 'he' or 'glorot'. Received: scheme={scheme!r}"
    )


def fan_scaled_normal(scheme, fan_in, fan_out, seed=None):
    """Truncated normal with He/Glorot variance for the given fans."""
    stddev = fan_stddev(scheme, fan_in, fan_out) / _TRUNCATION_STDDEV
    return keras.initializers.TruncatedNormal(
        mean=0.0, stddev=stddev, seed=seed
    )
