"""Argument checks with one wording: "`name` must be …. Received: name=value".

Used by the config, layers, schedules, the grid and the callbacks, so the
same rule reads the same way wherever it is broken. Each check returns the
(normalised) value so it can stand in an assignment:

    self.update_every = positive_int("update_every", update_every)
    self.fraction = number_in("drop_fraction", drop_fraction, 0, 1, low_open=True)
    self.timing = one_of("timing", timing, ("after_step", "instead_of_step"))

Booleans are not numbers here (`True` is refused where an int is asked).
"""

import math
import numbers


def _received(name, value):
    return f"Received: {name}={value!r}"


def fail(name, requirement, value, error=ValueError):
    """Raises `error` with the one wording: "`name` must be <requirement>. Received: ..."."""
    raise error(f"`{name}` must be {requirement}. {_received(name, value)}")


def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(name, value, minimum=None, maximum=None, allow_none=False):
    """An int (NumPy ints accepted) within [minimum, maximum], returned as int."""
    if value is None and allow_none:
        return None
    if not is_int(value):
        fail(name, _int_requirement(minimum, maximum), value)
    if (minimum is not None and value < minimum) or (
            maximum is not None and value > maximum):
        fail(name, _int_requirement(minimum, maximum), value)
    return int(value)


def _int_requirement(minimum, maximum):
    if minimum == 1 and maximum is None:
        return "a positive integer"
    if minimum == 0 and maximum is None:
        return "a non-negative integer"
    if maximum is None:
        return f"an integer >= {minimum}" if minimum is not None else "an integer"
    if minimum is None:
        return f"an integer <= {maximum}"
    return f"an integer in [{minimum}, {maximum}]"


def positive_int(name, value, allow_none=False):
    """An int >= 1."""
    return integer(name, value, minimum=1, allow_none=allow_none)


def non_negative_int(name, value, allow_none=False):
    """An int >= 0."""
    return integer(name, value, minimum=0, allow_none=allow_none)


def number_in(name, value, low=None, high=None, low_open=False, high_open=False,
              allow_none=False):
    """A finite real number in the interval, returned as float.

    `low_open`/`high_open` exclude the bound: number_in("s", s, 0, 1,
    high_open=True) is 0 <= s < 1.
    """
    if value is None and allow_none:
        return None
    requirement = _interval_requirement(low, high, low_open, high_open)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        fail(name, requirement, value)
    if not math.isfinite(value):
        fail(name, requirement, value)
    if low is not None and (value < low or (low_open and value == low)):
        fail(name, requirement, value)
    if high is not None and (value > high or (high_open and value == high)):
        fail(name, requirement, value)
    return float(value)


def _interval_requirement(low, high, low_open, high_open):
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return f"a number {'>' if low_open else '>='} {low}"
    if low is None:
        return f"a number {'<' if high_open else '<='} {high}"
    return (f"a number in {'(' if low_open else '['}{low}, {high}"
            f"{')' if high_open else ']'}")


def positive_number(name, value, allow_none=False):
    """A finite number > 0."""
    return number_in(name, value, 0, None, low_open=True, allow_none=allow_none)


def one_of(name, value, choices):
    """`value` if it is one of `choices` (a sequence or a Registry)."""
    names = list(choices.names()) if hasattr(choices, "names") else list(choices)
    if value not in names:
        fail(name, f"one of {names}", value)
    return value
