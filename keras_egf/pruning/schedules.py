"""Gradual pruning schedules: when to prune and to what sparsity.

The same two schedules TFMOT (tensorflow-model-optimization) ships, natively,
so gradual pruning works without it; TFMOT's own `ConstantSparsity` /
`PolynomialDecay` objects are accepted too (`as_schedule`). A schedule is
called with the optimizer step and returns (should_prune, sparsity).
"""

import numpy as np

from keras_egf.pruning.distributions import check_sparsity


def _check_steps(begin_step, end_step, frequency):
    for name, value in (("begin_step", begin_step), ("frequency", frequency)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < (1 if name == "frequency" else 0):
            raise ValueError(f"{name} must be an integer >= "
                             f"{1 if name == 'frequency' else 0}. "
                             f"Received: {name}={value!r}")
    if end_step != -1 and (not isinstance(end_step, (int, np.integer))
                           or end_step < begin_step):
        raise ValueError(f"end_step must be -1 (never ends) or >= begin_step="
                         f"{begin_step}. Received: end_step={end_step!r}")


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


class ConstantSparsity(PruningSchedule):
    """`target_sparsity` on every pruning step (as TFMOT's)."""

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = check_sparsity(target_sparsity, "target_sparsity")

    def sparsity(self, step):
        return self.target_sparsity

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, **super().get_config()}


class PolynomialDecay(PruningSchedule):
    """From `initial_sparsity` at begin_step to `final_sparsity` at end_step:
    s(t) = final + (initial - final) * (1 - (t - begin) / (end - begin)) ** power
    (as TFMOT's)."""

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step,
                 power=3, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        if end_step == -1:
            raise ValueError("PolynomialDecay needs an end_step. Received: end_step=-1")
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
        import tensorflow as tf

        should, sparsity = self.schedule(tf.constant(int(step), tf.int64))
        return bool(np.asarray(should)), float(np.asarray(sparsity))

    def get_config(self):
        return self.schedule.get_config()


def as_schedule(schedule):
    """A keras-egf schedule, a TFMOT schedule (wrapped), or ValueError."""
    if isinstance(schedule, PruningSchedule):
        return schedule
    module = type(schedule).__module__ or ""
    if "tensorflow_model_optimization" in module and callable(schedule):
        return _ForeignSchedule(schedule)
    raise ValueError(
        "pruning_schedule must be keras_egf.pruning.ConstantSparsity / "
        "PolynomialDecay or a TFMOT pruning schedule. Received: "
        f"pruning_schedule={schedule!r}")
