"""Dynamic sparse training: SET and RigL mask updates during `fit`.

    model.fit(..., callbacks=[keras_egf.pruning.DynamicSparsity(
        "rigl", update_every=100, drop_fraction=0.3)])

Every `update_every` steps (from step `update_every` until `end_step`), each
masked layer drops its `k` smallest-magnitude active weights and grows `k`
connections among the positions not kept, so its active count never
changes. k = round(f(t) * active), with the drop fraction decaying as in
RigL (Evci et al. 2020): f(t) = drop_fraction / 2 * (1 + cos(pi t / end_step)).
- SET (Mocanu et al. 2018) grows at random positions (seeded).
- RigL grows where |g| is largest, g = dC/d(kernel * mask) the effective-
  kernel gradient at pruned positions. It is the training step's own
  gradient, taken at the update step (that step's batch, before its
  optimizer update), so RigL costs no extra backward pass: the model stores
  it on that one step (`MaskedModel.request_kernel_gradients`), whatever its
  `gradient_flow_every`.
Grown weights start at 0; grown and dropped positions have their optimizer
state reset to its starting value (momentum and Adam moments 0, Adagrad's
accumulator its `initial_accumulator_value`). Between updates pruned
weights stay exactly 0 as with any fixed mask, and gf/EGF keep being
reported. With `log_dir`, TensorBoard gets per layer and update
`dynamic_sparsity/<layer>/regrown` (connections grown) and
`dynamic_sparsity/<layer>/mask_change` (fraction of the kernel whose mask
changed), and `dynamic_sparsity/drop_fraction`.
"""

import math

import keras
import numpy as np

from keras_egf.pruning import masks as masks_lib
from keras_egf.pruning.gradual import optimizer_slots, slot_reset_value

METHODS = ("set", "rigl")


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
            replaced at an update (decays with a cosine to 0 at end_step).
        end_step: last step with updates (exclusive); default
            `end_fraction` of the training steps of this `fit` call.
        end_fraction: see end_step (RigL: 0.75).
        seed: seeds SET's random growth (the same seed gives the same masks).
        exclude: masked layer names left as they are.
        log_dir: TensorBoard folder for the per-update scalars.
    """

    def __init__(self, method="rigl", update_every=100, drop_fraction=0.3,
                 end_step=None, end_fraction=0.75, seed=0, exclude=(),
                 log_dir=None):
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
        self.method, self.update_every = method, update_every
        self.drop_fraction, self.end_fraction = float(drop_fraction), end_fraction
        self.end_step, self.seed, self.exclude = end_step, int(seed), tuple(exclude)
        self.log_dir = log_dir
        self.updates = []  # (step, drop fraction) of every update made
        self._writer = None

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
        if self.method == "rigl" and self._due(self._step):
            self.model.request_kernel_gradients()

    def on_train_batch_end(self, batch, logs=None):
        step, self._step = self._step, self._step + 1
        if self._due(step):
            self.update(step)

    def update(self, step):
        """One drop-and-grow update of every layer (the step's fraction)."""
        fraction = cosine_drop_fraction(step, self.drop_fraction, self._end_step)
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
        magnitudes = np.abs(keras.ops.convert_to_numpy(keras.ops.take(kernel, active)))
        remained, dropped = _drop(active, magnitudes, fraction)
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
        changed = np.zeros(old.size, bool)
        changed[dropped], changed[grown] = True, True
        new = old.copy()
        new[dropped], new[grown] = False, True
        shape = tuple(layer.kernel.shape)
        at = keras.ops.convert_to_tensor(changed.reshape(shape))
        # Dropped weights are zeroed; grown ones were pruned (0) or just
        # dropped: they start at 0 too.
        layer.kernel.assign(keras.ops.where(at, keras.ops.zeros((), layer.kernel.dtype),
                                            layer.kernel))
        layer.mask.assign(new.reshape(shape).astype(layer.mask.dtype))
        optimizer = self.model.optimizer
        if optimizer.built:  # state of dropped and grown positions reset
            for slot in optimizer_slots(optimizer, layer.kernel):
                reset = keras.ops.full((), slot_reset_value(optimizer, slot), slot.dtype)
                slot.assign(keras.ops.where(at, reset, slot))
        # as many turned on as off; a position dropped and regrown kept its bit
        flipped = 2 * (int(np.count_nonzero(changed)) - dropped.size)
        return int(grown.size), flipped / old.size

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
