"""Dynamic sparse training: SET and RigL mask updates during `fit`.

    model.fit(..., callbacks=[keras_egf.pruning.DynamicSparsity(
        "rigl", update_every=100, drop_fraction=0.3)])

Every `update_every` steps (from step `update_every` until `end_step`), each
masked layer drops k of its active weights and grows k connections among
the positions not kept (a just-dropped position may be grown again), so its
active count never changes.

Drop rules (`drop_rule`):
- "magnitude" (default, RigL and SET): the k = round(f(t) * active)
  smallest |w|, with the drop fraction decaying as in RigL (Evci et al.
  2020): f(t) = drop_fraction / 2 * (1 + cos(pi t / end_step)). For SET this
  is the SET of RigL's code (sparse_optimizers, rigl_tf2 mask_updaters) and
  of JaxPruner, the baseline RigL compares against.
- "sign" (SET only): the SET authors' rule (Mocanu et al. 2018, SET-MLP
  code, `weightsEvolution`): with a constant zeta = drop_fraction, the
  round(zeta * n_neg) negative weights nearest zero, the round(zeta * n_pos)
  positive weights nearest zero, and every active weight that is exactly 0.
Growth:
- SET grows at random positions (seeded).
- RigL grows where |g| is largest, g = dC/d(kernel * mask) the effective-
  kernel gradient at pruned positions. It is the training step's own
  gradient, taken at the update step (that step's batch, at the weights
  before its optimizer update), so RigL costs no extra backward pass: the
  model stores it on that one step (`MaskedModel.request_kernel_gradients`),
  whatever its `gradient_flow_every`.

Timing (`timing`): "after_step" (default) runs the update after the update
step's optimizer step: the drop ranks the weights after that step, RigL's
growth uses the step's gradient, taken at the weights before it.
"instead_of_step" (RigL's TF1 code, JaxPruner) spends the update step's
batch on the update: its optimizer step is undone (every trainable weight
and its optimizer slots get their values from before the step back, at the
update steps only: nothing is copied on other steps), so drop and growth
see the same weights. The optimizer's iteration count and BatchNorm's
moving statistics still advance (in RigL's TF1 code the global step does
not).

Weights and optimizer state: a newly grown connection (inactive before the
update) starts at 0 with its optimizer state at its starting value
(momentum and Adam moments 0, Adagrad's accumulator its
`initial_accumulator_value`); a dropped one is zeroed with its state reset,
so pruned weights stay exactly 0. A connection dropped and grown again in
the same update keeps its weight and optimizer state, as RigL's code
(`reinit_when_same=False`) and JaxPruner do; `reinit_when_same=True` treats
it as new (0, state reset), as keras-egf 0.2 did and as the SET
authors' code does. Between updates pruned weights stay exactly 0 as with
any fixed mask, and gf/EGF keep being reported. With `log_dir`,
TensorBoard gets per layer and update `dynamic_sparsity/<layer>/regrown`
(connections grown) and `dynamic_sparsity/<layer>/mask_change` (fraction
of the kernel whose mask changed), and `dynamic_sparsity/drop_fraction`.
"""

import math

import keras
import numpy as np

from keras_egf.pruning import masks as masks_lib
from keras_egf.pruning.gradual import optimizer_slots, slot_reset_value

METHODS = ("set", "rigl")
DROP_RULES = ("magnitude", "sign")
TIMINGS = ("after_step", "instead_of_step")
END_FRACTION = 0.75  # RigL's: no mask update in the last quarter of training


def update_steps(total_steps, update_every, end_fraction=END_FRACTION):
    """The steps at which `DynamicSparsity` updates masks in a `fit` of
    `total_steps` steps from step 0 (update_every, 2 update_every, ...
    below end_fraction of the steps); empty when the run is too short."""
    return range(update_every, max(1, int(end_fraction * total_steps)), update_every)


def cosine_drop_fraction(step, drop_fraction, end_step):
    """RigL's schedule: drop_fraction / 2 * (1 + cos(pi step / end_step)),
    0 from end_step on."""
    if step >= end_step:
        return 0.0
    return drop_fraction / 2.0 * (1.0 + math.cos(math.pi * step / end_step))


def drop_and_grow(mask, kernel, grow_scores, fraction):
    """(new mask, grown, remained): drop round(fraction * active) smallest
    |kernel| among active weights, grow as many highest `grow_scores` among
    the positions not remaining. Masks as bool arrays (ties: first)."""
    mask = np.asarray(mask) > 0
    active = np.flatnonzero(mask)
    remained_at, dropped_at = _drop(
        active, np.abs(np.asarray(kernel).reshape(-1)[active]), fraction)
    grown_at = _grow_top(np.array(grow_scores, dtype=np.float64).reshape(-1),
                         remained_at, dropped_at.size)
    remained = np.zeros(mask.size, bool)
    grown = np.zeros(mask.size, bool)
    remained[remained_at], grown[grown_at] = True, True
    shape = mask.shape
    return ((remained | grown).reshape(shape), grown.reshape(shape),
            remained.reshape(shape))


def _drop(active, magnitudes, fraction):
    """Flat indices (remained, dropped) among the `active` ones: the
    round(fraction * active) smallest `magnitudes` (|kernel| at `active`) are
    dropped (ties: the first kept). Only the active weights are ranked."""
    k = int(round(fraction * active.size))
    keep = masks_lib.top_k_selection(magnitudes, active.size - k)
    return active[keep], active[~keep]


def _drop_sign(active, values, fraction):
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


def _grow_top(scores, remained, k):
    """Flat indices of the k highest `scores` (flat, overwritten) among the
    positions not in `remained` (ties: the first), in O(size)."""
    scores[remained] = -np.inf
    return masks_lib.top_k_indices(scores, k)


def _grow_random(rng, size, remained, k):
    """Flat indices of k positions drawn uniformly without replacement among
    the `size` positions not in `remained`."""
    free = np.ones(size, bool)
    free[remained] = False
    free = np.flatnonzero(free)
    return free[rng.choice(free.size, k, replace=False, shuffle=False)]


class DynamicSparsity(keras.callbacks.Callback):
    """Drops and regrows connections during training (SET or RigL).

    Args:
        method: "set" (random growth) or "rigl" (gradient growth).
        update_every: steps between mask updates (ΔT).
        drop_fraction: the initial fraction of each layer's active weights
            replaced at an update (decays with a cosine to 0 at end_step);
            with drop_rule="sign", the SET authors' constant zeta.
        end_step: last step with updates (exclusive); default
            `end_fraction` of the training steps of this `fit` call.
        end_fraction: see end_step (RigL: 0.75).
        seed: seeds SET's random growth (the same seed gives the same masks).
        exclude: masked layer names left as they are.
        log_dir: TensorBoard folder for the per-update scalars.
        drop_rule: "magnitude" (the smallest |w|, cosine-decayed fraction:
            RigL, and SET as RigL's and JaxPruner's code run it) or "sign"
            (SET only: the SET authors' rule, zeta of the negative and zeta
            of the positive weights nearest zero, constant zeta).
        timing: "after_step" (the update follows the update step's optimizer
            step) or "instead_of_step" (that optimizer step is undone:
            drop and growth see the same weights, as in RigL's TF1 code and
            JaxPruner).
        reinit_when_same: False (default, as RigL's code and JaxPruner): a
            connection dropped and grown again in one update keeps its
            weight and optimizer state; True: it restarts at 0 with its
            state reset, like a new one (keras-egf 0.2, the SET authors).
    """

    def __init__(self, method="rigl", update_every=100, drop_fraction=0.3,
                 end_step=None, end_fraction=END_FRACTION, seed=0, exclude=(),
                 log_dir=None, drop_rule="magnitude", timing="after_step",
                 reinit_when_same=False):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"Unknown dynamic sparsity method. Expected one of "
                             f"{METHODS}. Received: method={method!r}")
        for name, value in (("update_every", update_every),
                            ("end_step", 1 if end_step is None else end_step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1. "
                                 f"Received: {name}={value!r}")
        for name, value in (("drop_fraction", drop_fraction),
                            ("end_fraction", end_fraction)):
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1]. "
                                 f"Received: {name}={value!r}")
        for name, value, allowed in (("drop_rule", drop_rule, DROP_RULES),
                                     ("timing", timing, TIMINGS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}. "
                                 f"Received: {name}={value!r}")
        if drop_rule == "sign" and method != "set":
            raise ValueError(
                "drop_rule='sign' is the SET authors' rule, for method='set' "
                "only (RigL drops by magnitude). Received: drop_rule='sign', "
                f"method={method!r}")
        if not isinstance(reinit_when_same, bool):
            raise ValueError("reinit_when_same must be True or False. "
                             f"Received: reinit_when_same={reinit_when_same!r}")
        self.drop_rule, self.timing = drop_rule, timing
        self.reinit_when_same = reinit_when_same
        self.method, self.update_every = method, update_every
        self.drop_fraction, self.end_fraction = float(drop_fraction), end_fraction
        self.end_step, self.seed, self.exclude = end_step, int(seed), tuple(exclude)
        self.log_dir = log_dir
        self.updates = []  # (step, drop fraction) of every update made
        self._writer = None
        self._before_step = None  # timing="instead_of_step": [(variable, value)]

    def _due(self, step):
        return step > 0 and step % self.update_every == 0 and step < self._end_step

    def on_train_begin(self, logs=None):
        if getattr(self.model, "steps_per_execution", 1) != 1:
            raise ValueError("DynamicSparsity counts steps one batch at a time: "
                             "compile with steps_per_execution=1. Received: "
                             f"steps_per_execution={self.model.steps_per_execution}")
        self._step = int(self.model.optimizer.iterations.numpy())
        total = (self.params or {}).get("epochs", 1) * ((self.params or {}).get("steps") or 0)
        self._end_step = self.end_step or max(1, int(self.end_fraction * total)) + self._step
        masks_lib.check_exclude(self.model, self.exclude)
        self._layers = [l for l in masks_lib.masked_layers(self.model)
                        if l.name not in self.exclude]
        if self.method == "rigl":
            self.model.enable_kernel_gradients()

    def on_train_batch_begin(self, batch, logs=None):
        if not self._due(self._step):
            return
        if self.method == "rigl":
            self.model.request_kernel_gradients()
        if self.timing == "instead_of_step":
            self._before_step = self._trainable_state()

    def on_train_batch_end(self, batch, logs=None):
        step, self._step = self._step, self._step + 1
        if self._due(step):
            if self._before_step is not None:  # undo the step's optimizer update
                for variable, value in self._before_step:
                    variable.assign(value)
                self._before_step = None
            self.update(step)

    def _trainable_state(self):
        """[(variable, a copy of its value)] of every trainable weight and
        its optimizer slots (counters and non-trainable weights, such as
        BatchNorm's moving statistics, are not included)."""
        optimizer = self.model.optimizer
        weights = list(self.model.trainable_variables)
        variables = weights + ([s for w in weights for s in optimizer_slots(optimizer, w)]
                               if optimizer.built else [])
        return [(v, np.array(keras.ops.convert_to_numpy(v), copy=True)) for v in variables]

    def drop_fraction_at(self, step):
        """The fraction an update at `step` drops: cosine-decayed, or the
        constant zeta of drop_rule="sign"; 0 from the end step on."""
        if self.drop_rule == "sign":
            return self.drop_fraction if step < self._end_step else 0.0
        return cosine_drop_fraction(step, self.drop_fraction, self._end_step)

    def update(self, step):
        """One drop-and-grow update of every layer (the step's fraction)."""
        fraction = self.drop_fraction_at(step)
        grads = (self.model.stored_kernel_gradients() if self.method == "rigl"
                 else None)
        rng = np.random.default_rng([self.seed, step])
        changes = {layer.name: self._write(layer, *self._select(layer, fraction, rng, grads))
                   for layer in self._layers}
        self.updates.append((step, fraction))
        self._summarise(step, fraction, changes)
        return changes

    def _select(self, layer, fraction, rng, grads):
        """(old mask, dropped, grown) of one layer, flat, from NumPy."""
        old = layer.mask.numpy().reshape(-1) > 0
        active = np.flatnonzero(old)
        # |kernel| read at the active positions only (a gather from a read
        # value: a gather from the variable itself would switch it to
        # TensorFlow's slower copy-on-read mode for every later step)
        kernel = keras.ops.reshape(keras.ops.convert_to_tensor(layer.kernel), (-1,))
        values = keras.ops.convert_to_numpy(keras.ops.take(kernel, active))
        if self.drop_rule == "sign":
            remained, dropped = _drop_sign(active, values, fraction)
        else:
            remained, dropped = _drop(active, np.abs(values), fraction)
        if grads is not None:
            scores = grads[layer.name].reshape(-1)  # a fresh copy: made |g| in place
            grown = _grow_top(np.abs(scores, out=scores), remained, dropped.size)
        else:
            grown = _grow_random(rng, old.size, remained, dropped.size)
        return old, dropped, grown

    def _write(self, layer, old, dropped, grown):
        """Applies one layer's drop and growth: one elementwise select per
        variable (the kernel, each optimizer slot) and one mask write.
        Returns (grown count, fraction of the kernel whose mask changed)."""
        new = old.copy()
        new[dropped], new[grown] = False, True
        flipped = new != old
        if self.reinit_when_same:  # a dropped and regrown one restarts too
            changed = np.zeros(old.size, bool)
            changed[dropped], changed[grown] = True, True
        else:
            changed = flipped
        shape = tuple(layer.kernel.shape)
        at = keras.ops.convert_to_tensor(changed.reshape(shape))
        # Dropped weights are zeroed; newly grown ones were pruned (0) and
        # start at 0; both get their optimizer state reset. A connection
        # dropped and grown again keeps its weight and state (unless
        # reinit_when_same).
        layer.kernel.assign(keras.ops.where(at, keras.ops.zeros((), layer.kernel.dtype),
                                            layer.kernel.value))
        layer.mask.assign(new.reshape(shape).astype(layer.mask.dtype))
        optimizer = self.model.optimizer
        if optimizer.built:
            for slot in optimizer_slots(optimizer, layer.kernel):
                reset = keras.ops.full((), slot_reset_value(optimizer, slot), slot.dtype)
                slot.assign(keras.ops.where(at, reset, slot.value))
        return int(grown.size), int(np.count_nonzero(flipped)) / old.size

    def _summarise(self, step, fraction, changes):
        if self.log_dir is None:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=step):
            tf.summary.scalar("dynamic_sparsity/drop_fraction", fraction)
            for name, (grown, change) in changes.items():
                tf.summary.scalar(f"dynamic_sparsity/{name}/regrown", grown)
                tf.summary.scalar(f"dynamic_sparsity/{name}/mask_change", change)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
