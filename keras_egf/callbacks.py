"""Callbacks: gradient flow on a fixed batch set at evenly spread epochs, and
divergence (NaN/Inf loss) detection."""

import math

import keras
import numpy as np
from keras import ops

from keras_egf import backend as backend_lib
from keras_egf import layers as layers_lib
from keras_egf import model as model_lib
from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS as MEASURES
from keras_egf.gradient_flow import (
    fixed_batch_point,
    gradient_flow_measures,
    masked_gradients,
    mean_gradient,
)
from keras_egf.validation import integer, positive_int


def evaluation_epochs(epochs, num_points):
    """The `num_points` epochs (0-based) spread evenly over `epochs`.

    (1000, 11) -> 0, 99, 199, ..., 999; (5, 5) -> 0..4; (1, 1) -> 0. One
    point means the last epoch.
    """
    epochs = positive_int("epochs", epochs)
    num_points = integer("num_points", num_points, minimum=1, maximum=epochs)
    if num_points == 1:
        return [epochs - 1]
    return [i * (epochs - 1) // (num_points - 1) for i in range(num_points)]


# Prefix of EGFCallback's keys in the epoch logs (and so in History and
# Keras's TensorBoard scalars): "fixed_batch_gf_1" ... "fixed_batch_egf_2",
# the fixed-batch measure (docs/method.md), not a validation metric: its
# batches are training batches unless chosen otherwise.
LOG_PREFIX = "fixed_batch_"


def log_keys():
    """EGFCallback's keys in the epoch logs: fixed_batch_gf_1, ...."""
    return tuple(LOG_PREFIX + m for m in MEASURES)


def as_batches(batches):
    """`batches` as a list of (x, y[, sample_weight]) batches: a list (or any
    iterable, e.g. a tf.data.Dataset) of batches, or one batch (x, y) /
    (x, y, sample_weight), as `validation_data` takes it."""
    if isinstance(batches, (tuple, list)) and 2 <= len(batches) <= 3 and \
            not all(isinstance(b, (tuple, list)) for b in batches):
        return [tuple(batches)]  # one (x, y): not every item is a batch
    return [tuple(b) for b in batches]


def objective_kernel_gradients(model, x, y, sample_weight=None):
    """g_l of the training objective on one batch, with no side effects.

    The objective is the one the optimizer minimises: the compiled loss
    (whatever form `compile` got it in, string or object) plus `model.losses`
    (weight regularisation, `add_loss`). The model runs in training mode
    (BatchNorm with the batch's statistics, as in the training step) inside a
    `keras.StatelessScope`, so moving statistics, RNG state and metrics are
    left as they were. The gradients are taken with respect to the effective
    kernels (pruned positions included), unscaled: under a loss-scaling
    optimizer (mixed precision) the loss is scaled to keep float16 gradients
    from underflowing and the gradients are divided back.

    Returns one gradient per `keras_egf.prunable_layers(model)` layer.
    """
    layers = layers_lib.prunable_layers(model)
    trainable = list(model.trainable_variables)
    index = {id(v): i for i, v in enumerate(trainable)}
    frozen = [l.name for l in layers if id(l.kernel) not in index]
    if frozen:
        raise ValueError(
            f"Gradient flow needs trainable kernels; layers {frozen} of model "
            f"{model.name!r} are frozen (trainable=False).")
    kernels = [l.kernel for l in layers]
    kernel_ids = {id(k) for k in kernels}
    state = [(v, ops.copy(v.value)) for v in
             [v for v in trainable if id(v) not in kernel_ids]
             + list(model.non_trainable_variables)
             + list(model.metrics_variables)]
    backend = backend_lib.get()
    replicas = backend.replicas()
    scale = model_lib.loss_scale(getattr(model, "optimizer", None), "float32")
    scale = 1.0 if scale is None else float(scale)

    def objective():
        with layers_lib.effective_kernel_gradients(
                layers_lib.MASK_PRODUCT_STRAIGHT_THROUGH):
            y_pred = model(x, training=True)
        loss = model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=True)
        # Keras divides losses by the replica count under tf.distribute.
        return ops.cast(loss, "float32") * float(replicas) * scale

    while True:
        loss, grads = backend.gradients(objective, kernels, state)
        grads = [ops.cast(g, "float32") / scale for g in grads]
        finite = all(bool(ops.all(ops.isfinite(g))) for g in grads)
        if finite or scale <= 1.0 or not bool(ops.isfinite(loss / scale)):
            return grads
        scale /= 2.0  # float16 overflow under this scale: retry, as the
        # loss-scaling optimizer would.


def measured_layers(model, who):
    """`model`'s prunable layers, whose kernels gf/EGF are taken over; a
    ValueError naming `who` and the model when it has none."""
    layers = layers_lib.prunable_layers(model)
    if not layers:
        names = [l.name for l in model.layers]
        raise ValueError(
            f"{who}: model {model.name!r} has no prunable layer (Dense, "
            "Conv*, Embedding, ...: keras_egf.prunable_layers finds none), "
            "so there is no kernel to measure gradient flow over. Received: "
            f"model={model.name!r} with layers {names[:8]}"
            + (" ..." if len(names) > 8 else ""))
    return layers


def gradient_flow_on_batches(model, batches):
    """gf/EGF of `model`'s training objective on a fixed batch set.

    One gradient of the mean objective over all examples of `batches` (each
    batch's gradient weighted by its size; see `objective_kernel_gradients`),
    then the measures of `keras_egf.gradient_flow.gradient_flow_measures`:
    the norm of the mean gradient ("fixed-batch" scale), smaller than the
    mean of per-batch norms that the training step reports.

    Returns {measure: float, "layers": {name: {"egf_1": .., "egf_2": ..}}}.
    """
    layers = measured_layers(model, "gradient_flow_on_batches")
    masks = [l.mask if layers_lib.is_masked_layer(l) else None for l in layers]

    def gradients(batch):
        sample_weight = batch[2] if len(batch) > 2 else None
        return backend_lib.get().on_one_replica(
            objective_kernel_gradients, model, batch[0], batch[1], sample_weight)

    accumulated = mean_gradient(as_batches(batches), gradients, _batch_size)
    values = gradient_flow_measures(
        accumulated, masked_gradients(accumulated, masks), per_layer=True)
    return fixed_batch_point(values, [l.name for l in layers])


def _batch_size(batch):
    return int(keras.tree.flatten(batch[0])[0].shape[0])


DEFAULT_NUM_POINTS = 11


class EGFCallback(keras.callbacks.Callback):
    """Gradient flow on a fixed batch set at `num_points` spread epochs.

    At the end of each evaluation epoch it computes gf_1, gf_2, egf_1, egf_2
    and per-layer EGF norms from one gradient accumulated over `batches`
    (docs/method.md §2), adds them to the epoch logs as `fixed_batch_gf_1`,
    ..., `fixed_batch_egf_2` (so History has them at the evaluation epochs;
    the fixed-batch measure on `batches`, training data unless you pass
    other, not a validation metric like Keras's `val_*`), writes them to
    TensorBoard (`log_dir`, tags `egf/gf_1`, ..., `egf_layers/<layer>/egf_2`,
    step = epoch) and keeps them in `points`. `average` is the mean over the
    points so far ("average EGF").

    The epochs are `fit`'s (`self.params["epochs"]`), read when training
    begins; each `fit` starts its own `points`.

    Args:
        batches: the fixed batch set: a list of (x, y) batches (or a
            tf.data.Dataset of them), or one batch (x, y) as in
            `validation_data`; the same for the whole run.
        epochs: optional, kept for compatibility: `fit`'s epochs are used;
            a different number here is an error when training begins.
        num_points: evaluation points, 1 <= num_points <= epochs (default:
            min(11, epochs)).
        log_dir: TensorBoard directory (None: no TensorBoard output).
    """

    def __init__(self, batches, epochs=None, num_points=None, log_dir=None):
        super().__init__()
        self.batches = as_batches(batches)
        if not self.batches:
            raise ValueError(f"EGFCallback needs at least one batch. "
                             f"Received: batches={batches!r}")
        self.epochs = epochs
        self.num_points = num_points
        self.epochs_to_evaluate = None  # set when training begins
        if epochs is not None:  # bad values fail here, not inside fit
            self.epochs_to_evaluate = evaluation_epochs(
                epochs, min(DEFAULT_NUM_POINTS, epochs) if num_points is None
                else num_points)
        self.log_dir = log_dir
        self.points = []
        self._writer = None

    def on_train_begin(self, logs=None):
        self.points = []  # a new run
        epochs = (self.params or {}).get("epochs")
        if epochs is None:  # callbacks driven by hand, without fit's params
            epochs = self.epochs
        if epochs is None:
            raise ValueError("EGFCallback: no epochs to spread the points over: "
                             "run it in fit(), or pass epochs=. Received: epochs=None")
        if self.epochs is not None and self.epochs != epochs:
            raise ValueError(
                f"EGFCallback(epochs={self.epochs}) but fit runs epochs={epochs}: "
                f"the points would be spread over {self.epochs} epochs, not "
                f"{epochs}. Leave epochs= out (fit's is used) or make them "
                f"equal. Received: epochs={self.epochs}")
        num_points = self.num_points
        if num_points is None:
            num_points = min(DEFAULT_NUM_POINTS, epochs)
        self.epochs_to_evaluate = evaluation_epochs(epochs, num_points)
        if self.model is not None:  # fails here, not at the first point
            measured_layers(self.model, "EGFCallback")

    @property
    def average(self):
        """{measure: mean over the evaluated points} (empty if none yet)."""
        if not self.points:
            return {}
        return {m: float(np.mean([p[m] for p in self.points])) for m in MEASURES}

    def _summary_writer(self):
        if self._writer is None and self.log_dir:
            summary = tensorboard_summary("EGFCallback(log_dir=...)")
            self._writer = summary.create_file_writer(self.log_dir)
            with self._writer.as_default(step=0):  # which backend measured
                summary.text("keras_backend", " ".join(
                    backend_lib.description().values()))
        return self._writer

    def on_epoch_end(self, epoch, logs=None):
        if self.epochs_to_evaluate is None or epoch not in self.epochs_to_evaluate:
            return
        self.record(epoch, gradient_flow_on_batches(self.model, self.batches),
                    logs)

    def record(self, epoch, values, logs=None):
        """Keeps the point `values` of `epoch` (as `gradient_flow_on_batches`
        returns them), adds them to `logs` and writes them to TensorBoard:
        what an evaluation epoch does once the gradients are measured, for a
        trainer that measures them itself (`keras_egf.packing`)."""
        point = {"epoch": int(epoch), **values}
        self.points.append(point)
        if logs is not None:
            for m, key in zip(MEASURES, log_keys()):
                logs[key] = values[m]
        writer = self._summary_writer()
        if writer is not None:
            summary = tensorboard_summary("EGFCallback(log_dir=...)")
            with writer.as_default(step=int(epoch)):
                for m in MEASURES:
                    summary.scalar(f"egf/{m}", values[m])
                for name, norms in values["layers"].items():
                    for m, v in norms.items():
                        summary.scalar(f"egf_layers/{name}/{m}", v)
            writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


DEFAULT_MAX_LOSS = 1e6


def tensorboard_summary(what):
    """TensorFlow's summary API (`tf.summary`), which writes TensorBoard
    files; `what` (the caller, e.g. "EGFCallback(log_dir=...)") is named
    when TensorFlow is not installed."""
    try:
        # Imported when TensorBoard files are written: the core, and Keras's
        # JAX backend, run without TensorFlow.
        import tensorflow as tf
    except ImportError:
        raise ImportError(
            f"{what} writes TensorBoard files with TensorFlow's tf.summary; "
            "install TensorFlow (pip install -e '.[tensorflow]' in a keras-egf "
            "checkout) or pass no log_dir.") from None
    return tf.summary


def is_diverged(loss, max_loss=DEFAULT_MAX_LOSS):
    """The divergence rule: `loss` is NaN, Inf or above `max_loss` (None: no
    bound). A float (a logged loss) gives a bool; a tensor gives a boolean
    tensor, elementwise, computed where it lives (the packed trainer's
    per-member losses, on the device)."""
    if isinstance(loss, (int, float, np.number)):  # no tensor per batch
        return not math.isfinite(loss) or (max_loss is not None
                                           and loss > max_loss)
    bad = ops.logical_not(ops.isfinite(loss))
    if max_loss is None:
        return bad
    return ops.logical_or(bad, ops.greater(loss, max_loss))


def divergence_reason(loss, max_loss=DEFAULT_MAX_LOSS):
    """Why `loss` counts as diverged (`is_diverged`: "loss nan", "loss
    3e+07 > max_loss 1e+06"), or None when it does not."""
    loss = float(loss)
    if not is_diverged(loss, max_loss):
        return None
    if not math.isfinite(loss):
        return f"loss {loss}"
    return f"loss {loss:.3g} > max_loss {max_loss:g}"


class DivergenceMonitor(keras.callbacks.Callback):
    """Stops training when the loss becomes NaN, Inf or exceeds `max_loss`.

    Records the epoch and batch in `epoch`, `batch` and why in `reason`
    (reset when a `fit` begins).
    `max_loss` (default 1e6, far above any cross-entropy of a trained or
    freshly initialised classifier) catches runs whose loss explodes to huge
    finite values and then stalls with dead units instead of reaching NaN.
    """

    def __init__(self, max_loss=DEFAULT_MAX_LOSS):
        super().__init__()
        self.max_loss = max_loss
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        """A new run: not diverged."""
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
        reason = divergence_reason(loss, self.max_loss)
        if reason is None:
            return
        self.diverged, self.reason = True, reason
        self.epoch, self.batch = self._epoch, batch
        self.model.stop_training = True
