"""keras_egf.validation: one wording, "`name` must be …. Received: name=value"."""

import math

import numpy as np
import pytest

from keras_egf import validation as v


@pytest.mark.parametrize("check, value, message", [
    (v.positive_int, 0, "`n` must be a positive integer. Received: n=0"),
    (v.positive_int, 2.0, "`n` must be a positive integer. Received: n=2.0"),
    (v.positive_int, True, "`n` must be a positive integer. Received: n=True"),
    (v.non_negative_int, -1, "`n` must be a non-negative integer. Received: n=-1"),
    (v.positive_number, 0.0, "`n` must be a number > 0. Received: n=0.0"),
    (v.positive_number, math.nan, "`n` must be a number > 0. Received: n=nan"),
])
def test_refusals_name_the_value(check, value, message):
    with pytest.raises(ValueError) as info:
        check("n", value)
    assert str(info.value) == message


def test_accepted_values_are_normalised():
    assert v.positive_int("n", np.int64(3)) == 3 and type(v.positive_int("n", 3)) is int
    assert v.positive_int("n", None, allow_none=True) is None
    assert v.number_in("s", 0, 0, 1, high_open=True) == 0.0
    assert v.integer("d", 5, minimum=1, maximum=5) == 5
    assert v.one_of("t", "b", ("a", "b")) == "b"


def test_interval_bounds():
    with pytest.raises(ValueError, match=r"must be a number in \[0, 1\)\. Received: s=1"):
        v.number_in("s", 1, 0, 1, high_open=True)
    with pytest.raises(ValueError, match=r"must be a number in \(0, 1\]\. Received: s=0"):
        v.number_in("s", 0, 0, 1, low_open=True)
    with pytest.raises(ValueError, match=r"an integer in \[1, 5\]\. Received: d=6"):
        v.integer("d", 6, minimum=1, maximum=5)
    with pytest.raises(ValueError, match=r"one of \['a', 'b'\]\. Received: t='c'"):
        v.one_of("t", "c", ("a", "b"))
