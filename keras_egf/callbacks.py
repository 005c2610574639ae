"""Callbacks: gradient flow on a fixed batch set at evenly spread epochs, and
divergence (NaN/Inf loss) detection."""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_egf import layers as layers_lib
from keras_egf.gradient_flow import gradient_flow, layer_norms

from keras_egf.model import GRADIENT_FLOW_METRICS as MEASURES


def evaluation_epochs(epochs, num_points):
    """The `num_points` epochs (0-based) spread evenly over `epochs`.

    (1000, 11) -> 0, 99, 199, ..., 999; (5, 5) -> 0..4; (1, 1) -> 0. One
    point means the last epoch.
    """
    for name, value in (("epochs", epochs), ("num_points", num_points)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer. Received: {name}={value!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1. Received: epochs={epochs}")
    if not 1 <= num_points <= epochs:
        raise ValueError(
            f"num_points must be in [1, epochs={epochs}]. "
            f"Received: num_points={num_points}")
    if num_points == 1:
        return [epochs - 1]
    return [i * (epochs - 1) // (num_points - 1) for i in range(num_points)]


def gradient_flow_on_batches(model, batches, loss_fn=None):
    """gf/EGF of `model` for the mean loss over `batches` (one accumulated
    gradient with respect to the effective kernels, pruned positions
    included). Returns {measure: float, "layers": {name: {...}}}.
    """
    loss_fn = loss_fn or model.loss
    layers = layers_lib.prunable_layers(model)
    kernels = [l.kernel for l in layers]
    masks = [l.mask if layers_lib.is_masked_layer(l) else None for l in layers]
    total = sum(int(tf.shape(x)[0]) for x, _ in batches)
    accumulated = [tf.zeros(k.shape, k.dtype) for k in kernels]
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    # Keras losses divide by the replica count under a tf.distribute strategy.
    unscale = replicas if isinstance(loss_fn, keras.losses.Loss) else 1

    def batch_gradients(x, y):
        with tf.GradientTape() as tape:
            with layers_lib.effective_kernel_gradients(
                    layers_lib.MASK_PRODUCT_STRAIGHT_THROUGH):
                y_pred = model(x, training=False)
            loss = loss_fn(y, y_pred) * unscale
        return tape.gradient(loss, kernels)

    for x, y in batches:
        if replicas > 1 and tf.distribute.in_cross_replica_context():
            # Mirrored variables are read inside a replica: every replica
            # computes the whole fixed batch; replica 0's result is kept.
            per_replica = strategy.run(batch_gradients, args=(x, y))
            grads = [strategy.experimental_local_results(g)[0] for g in per_replica]
        else:
            grads = batch_gradients(x, y)
        weight = float(tf.shape(x)[0]) / total
        accumulated = [a + weight * g for a, g in zip(accumulated, grads)]
    masked = [g if m is None else g * tf.cast(m, g.dtype)
              for g, m in zip(accumulated, masks)]
    l1, l2 = layer_norms(masked, 1).numpy(), layer_norms(masked, 2).numpy()
    result = {
        "gf_1": float(gradient_flow(accumulated, 1)),
        "gf_2": float(gradient_flow(accumulated, 2)),
        "egf_1": float(np.mean(l1)),
        "egf_2": float(np.mean(l2)),
        "layers": {l.name: {"egf_1": float(a), "egf_2": float(b)}
                   for l, a, b in zip(layers, l1, l2)},
    }
    return result


class EGFCallback(keras.callbacks.Callback):
    """Gradient flow on a fixed batch set at `num_points` spread epochs.

    At the end of each evaluation epoch it computes gf_1, gf_2, egf_1, egf_2
    and per-layer EGF norms from one gradient accumulated over `batches`
    (design.md section 2), adds them to the epoch logs as `eval_gf_1`, ...,
    writes them to TensorBoard (`log_dir`, tags `egf/gf_1`, ...,
    `egf_layers/<layer>/egf_2`, step = epoch) and keeps them in `points`.
    `average` is the mean over the points so far ("average EGF").

    Args:
        batches: list of (x, y) batches, fixed for the whole run.
        epochs: number of epochs of the fit.
        num_points: evaluation points, 1 <= num_points <= epochs.
        log_dir: TensorBoard directory (None: no TensorBoard output).
    """

    def __init__(self, batches, epochs, num_points=11, log_dir=None):
        super().__init__()
        self.batches = list(batches)
        if not self.batches:
            raise ValueError("EGFCallback needs at least one batch. Received: batches=[]")
        self.epochs_to_evaluate = evaluation_epochs(epochs, num_points)
        self.log_dir = log_dir
        self.points = []
        self._writer = None

    @property
    def average(self):
        """{measure: mean over the evaluated points} (empty if none yet)."""
        if not self.points:
            return {}
        return {m: float(np.mean([p[m] for p in self.points])) for m in MEASURES}

    def _summary_writer(self):
        if self._writer is None and self.log_dir:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def on_epoch_end(self, epoch, logs=None):
        if epoch not in self.epochs_to_evaluate:
            return
        values = gradient_flow_on_batches(self.model, self.batches)
        point = {"epoch": int(epoch), **values}
        self.points.append(point)
        if logs is not None:
            for m in MEASURES:
                logs[f"eval_{m}"] = values[m]
        writer = self._summary_writer()
        if writer is not None:
            with writer.as_default(step=int(epoch)):
                for m in MEASURES:
                    tf.summary.scalar(f"egf/{m}", values[m])
                for name, norms in values["layers"].items():
                    for m, v in norms.items():
                        tf.summary.scalar(f"egf_layers/{name}/{m}", v)
            writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class DivergenceMonitor(keras.callbacks.Callback):
    """Stops training when the loss becomes NaN, Inf or exceeds `max_loss`.

    Records the epoch and batch in `epoch`, `batch` and why in `reason`.
    `max_loss` (default 1e6, far above any cross-entropy of a trained or
    freshly initialised classifier) catches runs whose loss explodes to huge
    finite values and then stalls with dead units instead of reaching NaN.
    """

    def __init__(self, max_loss=1e6):
        super().__init__()
        self.max_loss = max_loss
        self.diverged = False
        self.reason = None
        self.epoch = None
        self.batch = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            reason = f"loss {loss}"
        elif self.max_loss is not None and loss > self.max_loss:
            reason = f"loss {loss:.3g} > max_loss {self.max_loss:g}"
        else:
            return
        self.diverged, self.reason = True, reason
        self.epoch, self.batch = self._epoch, batch
        self.model.stop_training = True
