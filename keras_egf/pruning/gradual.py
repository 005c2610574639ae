"""Gradual pruning during training, as TFMOT's `UpdatePruningStep` and
`PruningSummaries` do, on keras-egf's masked layers.

    model = keras_egf.prune_low_magnitude(model, PolynomialDecay(0.0, 0.8, 0, 500))
    model.fit(..., callbacks=[keras_egf.pruning.UpdatePruningStep(),
                              keras_egf.pruning.PruningSummaries(log_dir)])

The step of the k-th training batch is k, TFMOT's `pruning_step` (counted
from the optimizer's iterations when `fit` starts, so it continues across
`fit` calls and after save/load): `PolynomialDecay(0.2, 0.6, begin_step=1,
end_step=4, frequency=1)` prunes to 0.2 before the first batch's step and
to 0.6 before the fourth. On each step the schedule says to prune, every
masked weight's mask is recomputed by magnitude (or any registered
method's score) to the schedule's sparsity, among the weights still kept:
masks only get sparser. A layer with `sparsity_m_by_n` gets its M-by-N
mask at step 1 and keeps it (as TFMOT); a layer with a `block_size` is
pruned in blocks.
Newly pruned weights are zeroed and their optimizer state reset (momentum
and Adam moments to 0, Adagrad's accumulators to their initial value), so
they stay exactly 0. The training step's
gf/EGF keep being reported across the updates.
"""

import os

import keras
import numpy as np

from keras_egf.pruning import masks as masks_lib
from keras_egf.pruning import schedules as schedules_lib
from keras_egf.pruning import structured


def owner(entry):
    """The layer a masked-weight entry belongs to (a MaskedDense is its
    own)."""
    return getattr(entry, "layer", entry)


def _layer_schedules(callback, exclude=()):
    """[(masked layer, schedule or None)] but `exclude`: the callback's
    schedule, else the layer's own (prune_low_magnitude on a layer), else
    the one prune_low_magnitude attached to the model."""
    converted = {}  # one schedule object per given schedule

    def schedule_of(layer):
        given = (callback.pruning_schedule
                 or getattr(owner(layer), "pruning_schedule", None)
                 or getattr(callback.model, "pruning_schedule", None))
        if given is None:
            return None
        if id(given) not in converted:
            converted[id(given)] = schedules_lib.as_schedule(given)
        return converted[id(given)]

    return [(layer, schedule_of(layer))
            for layer in masks_lib.masked_layers(callback.model)
            if layer.name not in exclude]


def optimizer_slots(optimizer, kernel):
    """Optimizer variables that hold per-entry state of `kernel`."""
    prefix = kernel.path.replace("/", "_")
    return [v for v in optimizer.variables
            if tuple(v.shape) == tuple(kernel.shape) and v.name.startswith(prefix)]


def slot_reset_value(optimizer, slot):
    """The value a slot starts from: Adagrad's accumulators start at
    `initial_accumulator_value` (0 would make a regrown weight's first step
    lr * g / sqrt(epsilon)); every other slot at 0."""
    accumulators = getattr(optimizer, "_accumulators", None) or ()
    if any(slot is a for a in accumulators):
        return float(optimizer.initial_accumulator_value)
    return 0.0


def _structured_mask(entry, scores, count, sparsity):
    """The new mask of `entry` from its ranked scores: top `count`, or by
    blocks when its layer has a block_size."""
    layer = owner(entry)
    block = tuple(getattr(layer, "block_size", (1, 1)) or (1, 1))
    if block == (1, 1):
        return masks_lib.top_k_mask(scores, count)
    pooled = structured.block_scores(np.where(np.isfinite(scores), scores, 0.0),
                                     block, layer.block_pooling_type)
    kept = masks_lib.top_k_mask(pooled, masks_lib.kept_count(pooled.size,
                                                             sparsity))
    return structured.expand_blocks(kept, block, scores.shape)


def _write_mask(model, entry, mask):
    entry.set_mask(mask)  # zeroes the newly pruned kernel entries
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        for slot in optimizer_slots(optimizer, entry.kernel):
            reset = slot_reset_value(optimizer, slot)
            slot.assign(np.where(mask > 0, slot.numpy(), reset).astype(slot.dtype))


def update_masks(model, sparsity, score=None, exclude=(), layers=None):
    """Prunes every masked weight (or those of `layers`; never `exclude`)
    to `sparsity` by `score` ({name: scores}, default |kernel|) among its
    kept weights, in blocks where its layer has a block_size; resets the
    optimizer state of newly pruned entries. Returns {name: new mask}."""
    layers = [l for l in (masks_lib.masked_layers(model) if layers is None
                          else layers) if l.name not in exclude]
    current = {l.name: l.mask.numpy() for l in layers}
    counts = {l.name: min(int(current[l.name].sum()),
                          masks_lib.kept_count(current[l.name].size, sparsity))
              for l in layers}
    # Layers already at the target keep their masks (a ConstantSparsity
    # schedule after its first update): no scoring, no writes.
    due = [l for l in layers if counts[l.name] < int(current[l.name].sum())]
    new = {l.name: current[l.name].astype(np.float32) for l in layers}
    if not due:
        return new
    scores = score(model) if score is not None else {
        l.name: np.abs(l.kernel.numpy() * current[l.name]) for l in due}
    ranked = masks_lib.among_kept({l.name: scores[l.name] for l in due}, current)
    for layer in due:
        mask = _structured_mask(layer, ranked[layer.name], counts[layer.name],
                                sparsity)
        _write_mask(model, layer, mask)
        new[layer.name] = mask
    return new


def update_m_by_n_masks(model, layers):
    """Sets the M-by-N mask of each masked weight in `layers` (entries
    whose layer has `sparsity_m_by_n`) from |kernel * mask|."""
    new = {}
    for entry in layers:
        scores = np.abs(entry.kernel.numpy() * entry.mask.numpy())
        mask = structured.m_by_n_mask(scores, owner(entry).sparsity_m_by_n)
        _write_mask(model, entry, mask)
        new[entry.name] = mask
    return new


class UpdatePruningStep(keras.callbacks.Callback):
    """Updates masks on the schedule's steps (TFMOT's `UpdatePruningStep`).

    Args:
        pruning_schedule: a ConstantSparsity / PolynomialDecay (native or
            TFMOT's); default: the one `prune_low_magnitude` attached.
        method: None (magnitude) or a registered pruning method whose score
            needs no data.
        exclude: layer names never pruned.
    """

    def __init__(self, pruning_schedule=None, method=None, exclude=()):
        super().__init__()
        if method is not None:  # refused here, not inside fit
            from keras_egf.pruning import all_pruning_method_names, get_pruning_method
            if get_pruning_method(method).needs_data:
                free = [m for m in all_pruning_method_names()
                        if not get_pruning_method(m).needs_data]
                raise ValueError(
                    f"UpdatePruningStep cannot use method {method!r}: its score "
                    f"needs data, and masks are updated inside fit, where no "
                    f"batches can be passed. Use one of {free} (None: "
                    f"magnitude). Received: method={method!r}")
        self.pruning_schedule = pruning_schedule
        self.method = method
        self.exclude = tuple(exclude)
        self.updates = []  # (step, sparsity) of every update made

    def on_train_begin(self, logs=None):
        self.updates = []  # a new run
        # The step is counted here rather than read from the optimizer on
        # every batch (a device sync per step). A step a loss-scaling
        # optimizer skips still counts (as TFMOT's pruning_step).
        self._step = int(self.model.optimizer.iterations.numpy())
        self._layers = _layer_schedules(self, self.exclude)
        missing = [l.name for l, schedule in self._layers if schedule is None]
        if missing:
            raise ValueError(
                "UpdatePruningStep needs a pruning_schedule (or a model or "
                "layers from keras_egf.prune_low_magnitude); none for layers "
                f"{missing}")

    def on_train_batch_begin(self, batch, logs=None):
        self._step += 1
        step = self._step  # TFMOT's pruning_step of this batch: 1, 2, ...
        due = {}  # sparsity -> layers whose schedule prunes at this step
        m_by_n = []
        for layer, schedule in self._layers:
            if getattr(owner(layer), "sparsity_m_by_n", None) is not None:
                if step == 1:
                    m_by_n.append(layer)
                continue
            should_prune, sparsity = schedule(step)
            if should_prune:
                due.setdefault(float(sparsity), []).append(layer)
        if m_by_n:
            update_m_by_n_masks(self.model, m_by_n)
            self.updates.append((step, "m_by_n"))
        if not due:
            return
        score = None
        if self.method is not None:
            from keras_egf.pruning import get_pruning_method
            score = get_pruning_method(self.method).score
        for sparsity, layers in due.items():
            update_masks(self.model, sparsity, score, layers=layers)
            self.updates.append((step, sparsity))

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        """Re-zeroes pruned weights (TFMOT's re-masking at epoch end, so a
        model saved then holds weight * mask even if trained by a custom
        loop that does not mask gradients). Takes TFMOT's `batch=`."""
        for entry, _ in getattr(self, "_layers", ()):
            entry.apply_mask_to_kernel()


class PruningSummaries(keras.callbacks.Callback):
    """TensorBoard scalars at each epoch's start (as TFMOT's
    `PruningSummaries`) and at the end of training:
    `pruning/<layer>/sparsity` and `pruning/target_sparsity`; with layers on
    different schedules, `pruning/<layer>/target_sparsity` instead.
    `log_dir` must be a non-empty path."""

    def __init__(self, log_dir, pruning_schedule=None):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError("`log_dir` must be a non-empty string. "
                             f"Received: log_dir={log_dir!r}")
        self.log_dir = os.fspath(log_dir)
        self.pruning_schedule = pruning_schedule
        self._writer = None

    def on_train_begin(self, logs=None):
        # A new run: a writer that a run stopped by an error left open is
        # closed (the first epoch opens one).
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_epoch_begin(self, epoch, logs=None):
        # As TFMOT's: the state the epoch starts from, at its step.
        self._write()

    def on_train_end(self, logs=None):
        self._write()  # and the final state
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write(self):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        step = int(self.model.optimizer.iterations.numpy())
        pairs = _layer_schedules(self)
        schedules = {id(s): s for _, s in pairs if s is not None}
        with self._writer.as_default(step=step):
            for layer, schedule in pairs:
                tf.summary.scalar(f"pruning/{layer.name}/sparsity", layer.sparsity)
                if schedule is not None and len(schedules) > 1:
                    tf.summary.scalar(f"pruning/{layer.name}/target_sparsity",
                                      schedule(step)[1])
            if len(schedules) == 1:
                _, target = next(iter(schedules.values()))(step)
                tf.summary.scalar("pruning/target_sparsity", target)
        self._writer.flush()
