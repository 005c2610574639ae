"""Dynamic sparse training: SET and RigL mask updates during `fit`.

    model.fit(..., callbacks=[keras_egf.pruning.DynamicSparsity(
        "rigl", update_every=100, drop_fraction=0.3)])

`DynamicSparsity` is the drop-and-grow callback; each method is a small
subclass saying how it grows (`grow`) and which drop rules it takes, as in
RigL's and JaxPruner's code: `SET` grows at random, `RigL(SET)` where the
gradient is largest. `DynamicSparsity("rigl", ...)` builds the class
registered under that name (`DYNAMIC_METHODS`; add one with
`register_dynamic_method`). The drop rules and the drop fraction's
schedule objects are in `keras_egf.pruning.mask_updates`.

Every `update_every` steps (from step `update_every` until `end_step`), each
masked layer drops k of its active weights and grows k connections among
the positions not kept (a just-dropped position may be grown again), so its
active count never changes. Drop rules (`drop_rule`): "magnitude" (default,
RigL and SET: the smallest |w|, RigL's cosine-decayed fraction) or "sign"
(SET only: the SET authors' rule, constant zeta); see
`keras_egf.pruning.mask_updates`.
Growth:
- SET grows at random positions (seeded).
- RigL grows where |g| is largest, g = dC/d(kernel * mask) the effective-
  kernel gradient at pruned positions. It is the training step's own
  gradient, taken at the update step (that step's batch, at the weights
  before its optimizer update), so RigL costs no extra backward pass: the
  model records it on that one step into RigL's `GradientRecorder`
  (`MaskedModel.record_kernel_gradients`), whatever its
  `gradient_flow_every`.

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

from keras_egf.gradient_recorder import GradientRecorder
from keras_egf.pruning import masks as masks_lib
from keras_egf.pruning.mask_updates import (  # noqa: F401 (public here too)
    DROP_RULES, ConstantDropFraction, CosineDropFraction, DropFractionSchedule,
    drop_and_grow, grow_random, grow_top)
from keras_egf.pruning.gradual import optimizer_slots, slot_reset_value
from keras_egf.registry import Registry
from keras_egf.validation import fail, number_in, one_of, positive_int

DYNAMIC_METHODS = Registry(
    "dynamic sparsity method",
    register_with="keras_egf.pruning.dynamic.register_dynamic_method")
TIMINGS = ("after_step", "instead_of_step")
END_FRACTION = 0.75  # RigL's: no mask update in the last quarter of training


def register_dynamic_method(name, method_class, overwrite=False):
    """Makes `DynamicSparsity(name, ...)` build `method_class`, a
    `DynamicSparsity` subclass (usually overriding `grow`)."""
    if not (isinstance(method_class, type)
            and issubclass(method_class, DynamicSparsity)):
        fail("method_class", "a subclass of DynamicSparsity", method_class)
    return DYNAMIC_METHODS.register(name, method_class, overwrite=overwrite)


def _method_class(method):
    """The class registered as `method` (the registry's wording, with the
    value received, for an unknown one)."""
    if method not in DYNAMIC_METHODS:
        raise ValueError(f"{DYNAMIC_METHODS.unknown_message(method)} "
                         f"Received: method={method!r}")
    return DYNAMIC_METHODS[method]


def update_steps(total_steps, update_every, end_fraction=END_FRACTION):
    """The steps at which `DynamicSparsity` updates masks in a `fit` of
    `total_steps` steps from step 0 (update_every, 2 update_every, ...
    below end_fraction of the steps); empty when the run is too short."""
    return range(update_every, max(1, int(end_fraction * total_steps)), update_every)


class DynamicSparsity(keras.callbacks.Callback):
    """Drops and regrows connections during training: the drop-and-grow base.

    `DynamicSparsity(method, ...)` builds the subclass registered as
    `method` ("set": `SET`, "rigl": `RigL`). A subclass overrides `grow`
    (where an update regrows the dropped count), may take more
    `drop_rules`, and sets `grows_by_gradient` when `grow` reads the update
    step's kernel gradients (`self.recorder`, a `GradientRecorder` handed to
    the model when training begins).

    Run state (`updates`, the step count, the schedule) starts afresh in
    every `fit`.

    Args:
        method: "rigl" (default: gradient growth) or "set" (random growth),
            or any name registered with `register_dynamic_method`; a
            subclass called directly takes its own (None).
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

    drop_rules = ("magnitude",)  # the `DROP_RULES` this method takes
    grows_by_gradient = False  # True: `grow` reads self.recorder

    def __new__(cls, method="rigl", *args, **kwargs):
        if cls is DynamicSparsity:  # DynamicSparsity("rigl", ...) is a RigL
            cls = _method_class(method)
        return super().__new__(cls)

    def __init__(self, method=None, update_every=100, drop_fraction=0.3,
                 end_step=None, end_fraction=END_FRACTION, seed=0, exclude=(),
                 log_dir=None, drop_rule="magnitude", timing="after_step",
                 reinit_when_same=False):
        super().__init__()
        self.method = self._check_method(method)
        self.update_every = positive_int("update_every", update_every)
        self.end_step = positive_int("end_step", end_step, allow_none=True)
        self.drop_fraction = number_in("drop_fraction", drop_fraction, 0, 1,
                                       low_open=True)
        self.end_fraction = number_in("end_fraction", end_fraction, 0, 1,
                                      low_open=True)
        self.drop_rule = self._check_drop_rule(drop_rule)
        self.timing = one_of("timing", timing, TIMINGS)
        if not isinstance(reinit_when_same, bool):
            fail("reinit_when_same", "True or False", reinit_when_same)
        self.reinit_when_same = reinit_when_same
        self.seed, self.exclude = int(seed), tuple(exclude)
        self.log_dir = log_dir
        self.recorder = GradientRecorder() if self.grows_by_gradient else None
        self.updates = []  # (step, drop fraction) of every update of the run
        self.schedule = None  # the run's DropFractionSchedule
        self._writer = None
        self._before_step = None  # timing="instead_of_step": [(variable, value)]

    def _check_method(self, method):
        """`method`, or for None the name this class is registered under."""
        if method is None:
            return next((name for name, registered in DYNAMIC_METHODS.items()
                         if registered is type(self)), None)
        if _method_class(method) is not type(self):
            fail("method", f"the name {type(self).__name__} is registered under",
                 method)
        return method

    def _check_drop_rule(self, drop_rule):
        one_of("drop_rule", drop_rule, tuple(DROP_RULES))
        if drop_rule not in self.drop_rules:
            raise ValueError(
                f"`drop_rule` must be one of {list(self.drop_rules)} for "
                f"method={self.method!r} ('sign' is the SET authors' rule, for "
                f"method='set' only). Received: drop_rule={drop_rule!r}, "
                f"method={self.method!r}")
        return drop_rule

    def grow(self, layer, remained, k, rng):
        """Flat indices of the k positions of `layer`'s kernel an update
        grows, among those not in `remained` (flat indices); `rng` is the
        update's seeded generator."""
        raise NotImplementedError(
            f"{type(self).__name__} must override DynamicSparsity.grow")

    def drop_fraction_schedule(self, end_step):
        """The run's drop fraction, by its drop rule: RigL's cosine decay
        ("magnitude") or the SET authors' constant zeta ("sign")."""
        return DROP_RULES[self.drop_rule].schedule(self.drop_fraction, end_step)

    def _due(self, step):
        return step > 0 and step % self.update_every == 0 and step < self._end_step

    def on_train_begin(self, logs=None):
        if getattr(self.model, "steps_per_execution", 1) != 1:
            raise ValueError("DynamicSparsity counts steps one batch at a time: "
                             "compile with steps_per_execution=1. Received: "
                             f"steps_per_execution={self.model.steps_per_execution}")
        self.updates, self._before_step = [], None  # a new run
        self._step = int(self.model.optimizer.iterations.numpy())
        total = (self.params or {}).get("epochs", 1) * ((self.params or {}).get("steps") or 0)
        self._end_step = self.end_step or max(1, int(self.end_fraction * total)) + self._step
        self.schedule = self.drop_fraction_schedule(self._end_step)
        masks_lib.check_exclude(self.model, self.exclude)
        self._layers = [l for l in masks_lib.masked_layers(self.model)
                        if l.name not in self.exclude]
        if self.recorder is not None:
            self.recorder.cancel()
            self.model.record_kernel_gradients(self.recorder)

    def on_train_batch_begin(self, batch, logs=None):
        if not self._due(self._step):
            return
        if self.recorder is not None:  # this step's gradients, for `grow`
            self.recorder.request()
        if self.timing == "instead_of_step":
            self._before_step = self._trainable_state()

    def on_train_batch_end(self, batch, logs=None):
        step, self._step = self._step, self._step + 1
        if self._due(step):
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
        """The fraction an update at `step` drops (the run's schedule)."""
        return self.schedule(step)

    def update(self, step):
        """One drop-and-grow update of every layer (the step's fraction),
        after undoing the step's optimizer update (timing="instead_of_step")."""
        # `self.model` first: on JAX, reading it brings the training state
        # into the variables read and written below.
        optimizer = self.model.optimizer
        if self._before_step is not None:
            for variable, value in self._before_step:
                variable.assign(value)
            self._before_step = None
        fraction = self.drop_fraction_at(step)
        rng = np.random.default_rng([self.seed, step])
        changes = {layer.name: self._write(layer, optimizer,
                                           *self._select(layer, fraction, rng))
                   for layer in self._layers}
        self.updates.append((step, fraction))
        self._summarise(step, fraction, changes)
        return changes

    def _select(self, layer, fraction, rng):
        """(old mask, dropped, grown) of one layer, flat, from NumPy."""
        old = layer.mask.numpy().reshape(-1) > 0
        active = np.flatnonzero(old)
        # |kernel| read at the active positions only (a gather from a read
        # value: a gather from the variable itself would switch it to
        # TensorFlow's slower copy-on-read mode for every later step)
        kernel = keras.ops.reshape(keras.ops.convert_to_tensor(layer.kernel), (-1,))
        values = keras.ops.convert_to_numpy(keras.ops.take(kernel, active))
        remained, dropped = DROP_RULES[self.drop_rule].drop(active, values, fraction)
        return old, dropped, self.grow(layer, remained, dropped.size, rng)

    def _write(self, layer, optimizer, old, dropped, grown):
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
        if optimizer.built:
            for slot in optimizer_slots(optimizer, layer.kernel):
                reset = keras.ops.full((), slot_reset_value(optimizer, slot), slot.dtype)
                slot.assign(keras.ops.where(at, reset, slot.value))
        return int(grown.size), int(np.count_nonzero(flipped)) / old.size

    def _summarise(self, step, fraction, changes):
        if self.log_dir is None:
            return
        # TensorBoard's writer; here, so that JAX runs load TensorFlow only
        # when they write summaries.
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


class SET(DynamicSparsity):
    """SET (Mocanu et al. 2018): grows at random positions (seeded). Drops
    by magnitude, as RigL's and JaxPruner's SET, or by the SET authors'
    sign rule (drop_rule="sign")."""

    drop_rules = ("magnitude", "sign")

    def grow(self, layer, remained, k, rng):
        """k positions drawn uniformly without replacement."""
        return grow_random(rng, math.prod(layer.kernel.shape), remained, k)


class RigL(SET):
    """RigL (Evci et al. 2020): SET with gradient growth, where |g| is
    largest, g the update step's own effective-kernel gradient (recorded by
    the model's training step: no extra backward pass). Drops by magnitude."""

    drop_rules = ("magnitude",)
    grows_by_gradient = True

    def grow(self, layer, remained, k, rng):
        """The k largest |g| (ties: the first)."""
        scores = self.recorder.gradient(layer.name).reshape(-1)  # a fresh copy
        return grow_top(np.abs(scores, out=scores), remained, k)


register_dynamic_method("set", SET)
register_dynamic_method("rigl", RigL)
