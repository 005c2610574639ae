"""keras-egf on Keras's TensorFlow backend: what needs TensorFlow itself.

- `train_step`: `MaskedModel`'s training step (one tf.GradientTape: the
  effective-kernel gradients g_l, masked for the optimizer, recorded on
  request, and the four measures from the same gradients);
- `make_step_function`: Keras's train function around a step;
- `loss_scale`, `unscale_for_distribution`: loss scaling and tf.distribute;
- `pth_power_sum`: sum |g|^p for `keras_egf.gradient_flow`.

`keras_egf.backend.jax` holds the same for JAX; `keras_egf.backend.get()`
picks the one of `keras.backend.backend()`.
"""

import functools

import keras
import tensorflow as tf

from keras_egf import layers as layers_lib
from keras_egf.backend.common import scales_loss

WIDEST_FLOAT = "float64"  # SynFlow's sum


# `train_step(measure=MEASURE_AFTER)`: the step returns its kernel
# gradients beside its logs, and its caller measures them.
MEASURE_AFTER = "after"


def train_step(model, data, measure, recorder=None):
    """MaskedModel's training step on TensorFlow, Keras's own
    (keras/src/backend/tensorflow/trainer.py) with the kernel gradients
    masked: forward and loss, gradients, mask them, record them
    (`recorder`), apply, update the measures (`measure` True). With
    `measure=MEASURE_AFTER` it returns (logs, (g_l, g_l * m_l, loss scale))
    for its caller to measure (`make_step_function` under XLA)."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape() as tape:
        with layers_lib.effective_kernel_gradients(model._step_mask_product()):
            y_pred = model(x, training=True)
        loss = model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=True,
        )
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        model._loss_tracker.update_state(
            unscale_for_distribution(loss), sample_weight=batch_size
        )
        scale = loss_scale(model.optimizer, loss.dtype)
        if scale is not None:
            loss = model.optimizer.scale_loss(loss)

    weights = model.trainable_weights
    grads, kernels = model.mask_kernel_gradients(
        weights, tape.gradient(loss, weights))
    if recorder is not None:
        recorder.write(recorder.recorded(kernels.kernels, kernels.grads, scale))
    model.optimizer.apply_gradients(zip(grads, weights))
    if measure == MEASURE_AFTER:
        logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return logs, (kernels.grads, kernels.masked, scale)
    if measure and kernels.grads:
        _update_gradient_flow(model, kernels.grads, kernels.masked, scale)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _update_gradient_flow(model, grads, masked, scale):
    """`model.update_gradient_flow` with the whole batch's (g_l, g_l * m_l):
    under tf.distribute each replica holds its share of the batch gradient
    (the loss is scaled by 1/replicas), and the measures need the sum (of
    g_l * m_l too: with m_l in {0, 1} the sum of the masked shares is the
    masked sum, exactly)."""
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        grads, masked = replica.all_reduce(tf.distribute.ReduceOp.SUM,
                                           [grads, masked])
    model.update_gradient_flow(grads, masked, scale)


def loss_scale(optimizer, dtype=tf.float32):
    """The factor `optimizer.scale_loss` multiplies the loss by, or None.

    (LossScaleOptimizer's dynamic scale, or an optimizer's
    `loss_scale_factor`.) Read before `apply_gradients`, which may change it.
    """
    if not scales_loss(optimizer):
        return None
    return tf.identity(optimizer.scale_loss(tf.ones((), dtype)))


def unscale_for_distribution(loss):
    """`loss` times the replica count (Keras divides it under tf.distribute)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * replicas if replicas > 1 else loss


def pth_power_sum(g, p, members=False):
    """sum |g|^p of a float tensor, as float32 (`keras_egf.gradient_flow`);
    with `members`, one sum per entry of g's leading axis. One kernel for
    p=2 (fused square and sum); per member over g as rows (K, -1), which
    TensorFlow reduces faster than over several axes (the packed
    trainer's measure: 1.12x its plain step, 1.20x before)."""
    if members:
        rows = tf.reshape(g, (tf.shape(g)[0], -1))
        if rows.dtype != tf.float32:
            rows = tf.cast(rows, tf.float32)
        if p == 1:
            return tf.reduce_sum(tf.abs(rows), axis=1)
        return tf.square(tf.math.reduce_euclidean_norm(rows, axis=1))
    if p == 1:
        return tf.cast(tf.reduce_sum(tf.abs(g)), tf.float32)
    return tf.cast(2.0 * tf.nn.l2_loss(g), tf.float32)  # fused sum(g**2)


def as_tensor(g):
    """`g` as a dense tensor (an embedding's tf.IndexedSlices gradient
    densified)."""
    return tf.convert_to_tensor(g)


def _under_a_strategy(model):
    """Whether the model trains in tf.distribute replicas: it was built in
    a strategy's scope (Keras keeps that strategy), or one is active now."""
    return (getattr(model, "_distribute_strategy", None) is not None
            or tf.distribute.has_strategy())


def make_step_function(model, step, recorder=None, measure=False):
    """Keras's train function around `step(data, measure=measure)`: a
    tf.function (XLA under jit_compile); a recording step writes its
    recorder's buffers itself.

    On a CPU, a measuring step under XLA is split: the XLA-compiled step
    returns its kernel gradients, and TensorFlow's own kernels reduce them
    outside the XLA cluster. XLA:CPU compiles each full reduction into a
    single-threaded loop, TensorFlow's kernels use every core: on the
    benchmark MLP the measure costs 0.33x a step split, 0.41x not
    (docs/performance.md). On a GPU the step stays whole, and so it does
    under a tf.distribute strategy: there the optimizer's gradient
    all-reduce (a merge_call) may not run inside a nested tf.function."""
    if not (measure and model.jit_compile and not model.run_eagerly
            and not _under_a_strategy(model)
            and not tf.config.list_logical_devices("GPU")):
        return model._make_function(functools.partial(step, measure=measure))
    compiled = tf.function(functools.partial(step, measure=MEASURE_AFTER),
                           jit_compile=True, reduce_retracing=True)

    def measured_step(data):
        logs, (grads, masked, scale) = compiled(data)
        if grads:
            _update_gradient_flow(model, grads, masked, scale)
        logs = dict(logs)
        logs.update(model.gradient_flow_tracker.result())
        return logs

    model._jit_compile = False  # the outer function: Keras's own, plain
    try:
        return model._make_function(measured_step)
    finally:
        model._jit_compile = True


def replicas():
    """Replicas a loss is divided over (tf.distribute)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def _dense(g, variable):
    return tf.zeros_like(variable.value) if g is None else tf.convert_to_tensor(g)


def gradients(fn, variables, state=()):
    """(fn(), d fn() / d variables), dense: `fn` runs in a
    keras.StatelessScope mapping `variables` to copies of their values
    (and the (variable, value) pairs of `state`), so nothing it assigns
    reaches the model."""
    values = [tf.identity(v.value) for v in variables]
    with tf.GradientTape() as tape:
        tape.watch(values)
        with keras.StatelessScope(
                state_mapping=list(zip(variables, values)) + list(state),
                collect_losses=True):
            value = fn()
    grads = tape.gradient(value, values)
    return value, [_dense(g, v) for g, v in zip(grads, variables)]


def hessian_vector_product(fn, variables, vectors):
    """H v for the Hessian H of fn() with respect to `variables` and the
    vectors v (one per variable): the gradient of sum(grad(fn) * v), by
    double backpropagation."""
    values = [tf.identity(v.value) for v in variables]
    with tf.GradientTape() as outer:
        outer.watch(values)
        with tf.GradientTape() as inner:
            inner.watch(values)
            with keras.StatelessScope(
                    state_mapping=list(zip(variables, values)),
                    collect_losses=True):
                value = fn()
        grads = [_dense(g, v) for g, v in
                 zip(inner.gradient(value, values), variables)]
        z = tf.add_n([tf.reduce_sum(g * s) for g, s in zip(grads, vectors)])
    return [_dense(h, v) for h, v in
            zip(outer.gradient(z, values), variables)]


def on_one_replica(fn, *args):
    """fn(*args); under a tf.distribute strategy with several replicas, in
    cross-replica context, every replica computes it (mirrored variables
    are read inside a replica) and replica 0's result (a list) is kept."""
    strategy = tf.distribute.get_strategy()
    if (strategy.num_replicas_in_sync > 1
            and tf.distribute.in_cross_replica_context()):
        per_replica = strategy.run(fn, args=args)
        return [strategy.experimental_local_results(g)[0] for g in per_replica]
    return fn(*args)
