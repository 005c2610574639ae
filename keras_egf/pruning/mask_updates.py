"""What one dynamic-sparsity mask update computes, in NumPy: which active
weights it drops (drop rules, and the schedule of the drop fraction) and
where it grows as many (`grow_top`, `grow_random`). `DynamicSparsity`
(keras_egf.pruning.dynamic) applies them to the model.

Drop rules, `DynamicSparsity(drop_rule=...)`:
- "magnitude" (default, RigL and SET): the k = round(f(t) * active)
  smallest |w|, with the drop fraction decaying as in RigL (Evci et al.
  2020): f(t) = drop_fraction / 2 * (1 + cos(pi t / end_step)). For SET this
  is the SET of RigL's code (sparse_optimizers, rigl_tf2 mask_updaters) and
  of JaxPruner, the baseline RigL compares against.
- "sign" (SET only): the SET authors' rule (Mocanu et al. 2018, SET-MLP
  code, `weightsEvolution`): with a constant zeta = drop_fraction, the
  round(zeta * n_neg) negative weights nearest zero, the round(zeta * n_pos)
  positive weights nearest zero, and every active weight that is exactly 0.

Each rule is a `DropRule(drop, schedule)` in `DROP_RULES`:
`drop(active, values, fraction)` returns the flat indices (remained,
dropped) among the `active` ones (`values`: the kernel there), and
`schedule(drop_fraction, end_step)` the run's `DropFractionSchedule`.
Masks are NumPy bool arrays; ties are broken by position (the first kept).
"""

import collections
import math

import keras
import numpy as np

from keras_egf.pruning import masks as masks_lib
from keras_egf.validation import number_in, positive_int


class DropFractionSchedule:
    """The fraction of each layer's active weights an update at `step`
    replaces: `fraction(step)` below `end_step`, 0 from it on. Called with
    a step; serialises like the schedules of `keras_egf.pruning.schedules`
    (`get_config` / `from_config`)."""

    def __init__(self, drop_fraction, end_step):
        self.drop_fraction = number_in("drop_fraction", drop_fraction, 0, 1,
                                       low_open=True)
        self.end_step = positive_int("end_step", end_step)

    def fraction(self, step):
        raise NotImplementedError

    def __call__(self, step):
        return 0.0 if step >= self.end_step else self.fraction(step)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __repr__(self):
        return (f"{type(self).__name__}(drop_fraction={self.drop_fraction!r}, "
                f"end_step={self.end_step!r})")

    def get_config(self):
        return {"drop_fraction": self.drop_fraction, "end_step": self.end_step}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_egf")
class CosineDropFraction(DropFractionSchedule):
    """RigL's (Evci et al. 2020): drop_fraction / 2 * (1 + cos(pi step /
    end_step))."""

    def fraction(self, step):
        return self.drop_fraction / 2.0 * (
            1.0 + math.cos(math.pi * step / self.end_step))


@keras.saving.register_keras_serializable(package="keras_egf")
class ConstantDropFraction(DropFractionSchedule):
    """The SET authors' constant zeta = drop_fraction."""

    def fraction(self, step):
        return self.drop_fraction


def drop_smallest(active, magnitudes, fraction):
    """Flat indices (remained, dropped) among the `active` ones: the
    round(fraction * active) smallest `magnitudes` (|kernel| at `active`) are
    dropped (ties: the first kept). Only the active weights are ranked."""
    k = int(round(fraction * active.size))
    keep = masks_lib.top_k_selection(magnitudes, active.size - k)
    return active[keep], active[~keep]


def drop_sign(active, values, fraction):
    """Flat indices (remained, dropped) among the `active` ones by the SET
    authors' rule: of the negative `values` (the kernel at `active`) the
    round(fraction * n_neg) nearest zero are dropped, of the positive ones
    the round(fraction * n_pos) nearest zero, and every exact 0 (ties: the
    first kept)."""
    keep = np.zeros(active.size, bool)
    for side in (np.flatnonzero(values < 0), np.flatnonzero(values > 0)):
        k = int(round(fraction * side.size))
        keep[side[masks_lib.top_k_selection(np.abs(values[side]), side.size - k)]] = True
    return active[keep], active[~keep]


def drop_magnitude(active, values, fraction):
    """RigL's and JaxPruner's drop (SET's too, in their code): the
    round(fraction * active) smallest |w| among the `active` ones."""
    return drop_smallest(active, np.abs(values), fraction)


# A drop rule: how an update picks the weights it drops
# (`drop(active, values, fraction)` -> flat indices (remained, dropped)) and
# the schedule of its fraction.
DropRule = collections.namedtuple("DropRule", ("drop", "schedule"))
DROP_RULES = {"magnitude": DropRule(drop_magnitude, CosineDropFraction),
              "sign": DropRule(drop_sign, ConstantDropFraction)}


def drop_and_grow(mask, kernel, grow_scores, fraction):
    """(new mask, grown, remained): drop round(fraction * active) smallest
    |kernel| among active weights, grow as many highest `grow_scores` among
    the positions not remaining. Masks as bool arrays (ties: first)."""
    mask = np.asarray(mask) > 0
    active = np.flatnonzero(mask)
    remained_at, dropped_at = drop_smallest(
        active, np.abs(np.asarray(kernel).reshape(-1)[active]), fraction)
    grown_at = grow_top(np.array(grow_scores, dtype=np.float64).reshape(-1),
                        remained_at, dropped_at.size)
    remained = np.zeros(mask.size, bool)
    grown = np.zeros(mask.size, bool)
    remained[remained_at], grown[grown_at] = True, True
    shape = mask.shape
    return ((remained | grown).reshape(shape), grown.reshape(shape),
            remained.reshape(shape))


def grow_top(scores, remained, k):
    """Flat indices of the k highest `scores` (flat, overwritten) among the
    positions not in `remained` (ties: the first), in O(size)."""
    scores[remained] = -np.inf
    return masks_lib.top_k_indices(scores, k)


def grow_random(rng, size, remained, k):
    """Flat indices of k positions drawn uniformly without replacement among
    the `size` positions not in `remained`."""
    free = np.ones(size, bool)
    free[remained] = False
    free = np.flatnonzero(free)
    return free[rng.choice(free.size, k, replace=False, shuffle=False)]
