"""Gradual pruning schedules: when to prune and to what sparsity.

The same two schedules TFMOT (tensorflow-model-optimization) ships, natively,
so gradual pruning works without it; TFMOT's own `ConstantSparsity` /
`PolynomialDecay` objects are accepted too (`as_schedule`). A schedule is
called with a step and returns (should_prune, sparsity); the step of the
k-th training batch is k (TFMOT's `pruning_step`: 1 for the first batch,
continuing across `fit` calls and after save/load).

Schedules serialise like any Keras object (`get_config` / `from_config`,
`keras.saving.serialize_keras_object`); a masked layer saves its schedule
in its config, so a loaded model resumes pruning without it being passed
again.
"""

import keras
import numpy as np

from keras_egf import validation
from keras_egf.pruning.distributions import check_sparsity


def _check_steps(begin_step, end_step, frequency):
    validation.non_negative_int("begin_step", begin_step)
    validation.positive_int("frequency", frequency)
    if end_step != -1 and (not validation.is_int(end_step)
                           or end_step < begin_step):
        validation.fail("end_step", "-1 (never ends) or an integer >= "
                        f"begin_step={begin_step}", end_step)


class PruningSchedule:
    """Base: prunes at begin_step, then every `frequency` steps until
    end_step (inclusive; -1: forever)."""

    def __init__(self, begin_step=0, end_step=-1, frequency=100):
        _check_steps(begin_step, end_step, frequency)
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency

    def _due(self, step):
        if step < self.begin_step or (self.end_step != -1 and step > self.end_step):
            return False
        return (step - self.begin_step) % self.frequency == 0

    def sparsity(self, step):
        raise NotImplementedError

    def __call__(self, step):
        """(should_prune, target sparsity) at optimizer step `step`."""
        step = int(step)
        return self._due(step), float(self.sparsity(step))

    def get_config(self):
        return {"begin_step": self.begin_step, "end_step": self.end_step,
                "frequency": self.frequency}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__,
                     tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="keras_egf")
class ConstantSparsity(PruningSchedule):
    """`target_sparsity` on every pruning step (as TFMOT's)."""

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = check_sparsity(target_sparsity, "target_sparsity")

    def sparsity(self, step):
        return self.target_sparsity

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_egf")
class PolynomialDecay(PruningSchedule):
    """From `initial_sparsity` at begin_step to `final_sparsity` at end_step:
    s(t) = final + (initial - final) * (1 - (t - begin) / (end - begin)) ** power
    (as TFMOT's)."""

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step,
                 power=3, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        if end_step == -1:
            validation.fail("end_step", "an integer >= begin_step (PolynomialDecay "
                            "needs an end)", end_step)
        self.initial_sparsity = check_sparsity(initial_sparsity, "initial_sparsity")
        self.final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
        self.power = power

    def sparsity(self, step):
        span = max(1, self.end_step - self.begin_step)
        progress = min(1.0, max(0.0, (step - self.begin_step) / span))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (
            1.0 - progress) ** self.power

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity,
                "final_sparsity": self.final_sparsity, "power": self.power,
                **super().get_config()}


class _ForeignSchedule(PruningSchedule):
    """Wraps a TFMOT schedule: called with a step tensor, returns tensors."""

    def __init__(self, schedule):
        self.schedule = schedule
        self.begin_step = getattr(schedule, "begin_step", 0)
        self.end_step = getattr(schedule, "end_step", -1)
        self.frequency = getattr(schedule, "frequency", 100)

    def __call__(self, step):
        # TFMOT's schedules are TensorFlow's (any Keras backend here).
        import tensorflow as tf

        should, sparsity = self.schedule(tf.constant(int(step), tf.int64))
        return bool(np.asarray(should)), float(np.asarray(sparsity))

    def get_config(self):
        return self.schedule.get_config()

    __eq__ = object.__eq__
    __hash__ = object.__hash__


_NATIVE = {"ConstantSparsity": ConstantSparsity,
           "PolynomialDecay": PolynomialDecay}


def as_schedule(schedule):
    """A keras-egf schedule: itself; TFMOT's ConstantSparsity /
    PolynomialDecay: the native schedule of the same config; another TFMOT
    schedule: wrapped (not serialisable); anything else: ValueError."""
    if isinstance(schedule, PruningSchedule):
        return schedule
    module = type(schedule).__module__ or ""
    if "tensorflow_model_optimization" in module and callable(schedule):
        native = _NATIVE.get(type(schedule).__name__)
        if native is not None:
            config = schedule.get_config()
            return native.from_config(config.get("config", config))
        return _ForeignSchedule(schedule)
    raise ValueError(
        "pruning_schedule must be keras_egf.pruning.ConstantSparsity / "
        "PolynomialDecay or a TFMOT pruning schedule. Received: "
        f"pruning_schedule={schedule!r}")


def serialize_schedule(schedule):
    """A schedule as a JSON-able config (`keras.saving`'s format)."""
    schedule = as_schedule(schedule)
    if isinstance(schedule, _ForeignSchedule):
        raise ValueError(
            f"{type(schedule.schedule).__name__} (a TFMOT schedule keras-egf "
            "has no native version of) cannot be saved with the model; use "
            "ConstantSparsity or PolynomialDecay.")
    return keras.saving.serialize_keras_object(schedule)


def deserialize_schedule(value):
    """None, a schedule object, or a config from `serialize_schedule`
    (also a bare {"class_name": ..., "config": ...}) -> schedule or None."""
    if value is None:
        return None
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(
            value, custom_objects=_NATIVE)
    return as_schedule(value)
