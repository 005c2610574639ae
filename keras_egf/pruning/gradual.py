"""Gradual pruning during training, as TFMOT's `UpdatePruningStep` and
`PruningSummaries` do, on keras-egf's masked layers.

    model = keras_egf.prune_low_magnitude(model, PolynomialDecay(0.0, 0.8, 0, 500))
    model.fit(..., callbacks=[keras_egf.pruning.UpdatePruningStep(),
                              keras_egf.pruning.PruningSummaries(log_dir)])

On each step the schedule says to prune, every masked layer's mask is
recomputed by magnitude (or any registered method's score) to the
schedule's sparsity, among the weights still kept: masks only get sparser.
Newly pruned weights are zeroed and their optimizer state (momentum, Adam
moments, accumulators) cleared, so they stay exactly 0. The training step's
gf/EGF keep being reported across the updates.
"""

import keras
import numpy as np

from keras_egf.pruning import masks as masks_lib
from keras_egf.pruning import schedules as schedules_lib


def _schedule_of(callback):
    """The callback's schedule, else the one prune_low_magnitude attached."""
    schedule = callback.pruning_schedule or getattr(
        callback.model, "pruning_schedule", None)
    return None if schedule is None else schedules_lib.as_schedule(schedule)


def _optimizer_slots(optimizer, kernel):
    """Optimizer variables that hold per-entry state of `kernel`."""
    prefix = kernel.path.replace("/", "_")
    return [v for v in optimizer.variables
            if tuple(v.shape) == tuple(kernel.shape) and v.name.startswith(prefix)]


def update_masks(model, sparsity, score=None, exclude=()):
    """Prunes every masked layer (but `exclude`) to `sparsity` by `score`
    ({layer: scores}, default |kernel|) among its kept weights; clears the
    optimizer state of newly pruned entries. Returns {layer: new mask}."""
    layers = [l for l in masks_lib.masked_layers(model) if l.name not in exclude]
    scores = score(model) if score is not None else {
        l.name: np.abs(l.kernel.numpy() * l.mask.numpy()) for l in layers}
    current = {l.name: l.mask.numpy() for l in layers}
    ranked = masks_lib.among_kept({l.name: scores[l.name] for l in layers}, current)
    optimizer = getattr(model, "optimizer", None)
    new = {}
    for layer in layers:
        kept = current[layer.name]
        count = min(int(kept.sum()), masks_lib.kept_count(kept.size, sparsity))
        mask = masks_lib.top_k_mask(ranked[layer.name], count)
        layer.set_mask(mask)  # zeroes the newly pruned kernel entries
        if optimizer is not None and optimizer.built:
            for slot in _optimizer_slots(optimizer, layer.kernel):
                slot.assign(slot.numpy() * mask.astype(slot.dtype))
        new[layer.name] = mask
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
        self.pruning_schedule = pruning_schedule
        self.method = method
        self.exclude = tuple(exclude)
        self.updates = []  # (step, sparsity) of every update made

    def _schedule(self):
        schedule = _schedule_of(self)
        if schedule is None:
            raise ValueError("UpdatePruningStep needs a pruning_schedule (or a "
                             "model from keras_egf.prune_low_magnitude).")
        return schedule

    def on_train_begin(self, logs=None):
        # The step is counted here rather than read from the optimizer on
        # every batch (a device sync per step). A step a loss-scaling
        # optimizer skips still counts.
        self._step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        step, self._step = self._step, self._step + 1
        should_prune, sparsity = self._schedule()(step)
        if not should_prune:
            return
        score = None
        if self.method is not None:
            from keras_egf.pruning import get_pruning_method
            score = get_pruning_method(self.method).score
        update_masks(self.model, sparsity, score, self.exclude)
        self.updates.append((step, sparsity))


class PruningSummaries(keras.callbacks.Callback):
    """TensorBoard scalars per epoch: `pruning/<layer>/sparsity` and
    `pruning/target_sparsity` (TFMOT's `PruningSummaries`)."""

    def __init__(self, log_dir, pruning_schedule=None):
        super().__init__()
        self.log_dir = log_dir
        self.pruning_schedule = pruning_schedule
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        schedule = _schedule_of(self)
        step = int(self.model.optimizer.iterations.numpy())
        with self._writer.as_default(step=step):
            for layer in masks_lib.masked_layers(self.model):
                tf.summary.scalar(f"pruning/{layer.name}/sparsity", layer.sparsity)
            if schedule is not None:
                _, target = schedule(step)
                tf.summary.scalar("pruning/target_sparsity", target)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
