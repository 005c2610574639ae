"""keras-egf on Keras's TensorFlow backend: what needs TensorFlow itself.

- `train_step`: `MaskedModel`'s training step (one tf.GradientTape: the
  effective-kernel gradients g_l, masked for the optimizer, and the four
  measures from the same gradients), `update_gradient_flow`;
- `loss_scale`, `unscale_for_distribution`: loss scaling and tf.distribute;
- `kernel_gradient_buffers`: where a storing step writes g_l (RigL);
- `pth_power_sum`: sum |g|^p for `keras_egf.gradient_flow`.

`keras_egf.backend.jax` holds the same for JAX; `keras_egf.backend.get()`
picks the one of `keras.backend.backend()`.
"""

import keras
import tensorflow as tf

from keras_egf import layers as layers_lib
from keras_egf.gradient_flow import gradient_flow_measures


def train_step(model, data, measure, store=False):
    """MaskedModel's training step on TensorFlow (one tf.GradientTape);
    `measure`: update the gf/EGF trackers, `store`: write the kernel
    gradients to the model's buffers."""
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
    grads = tape.gradient(loss, weights)
    # gradients are g (unmasked) for kernels: mask them for the optimizer.
    index = {id(v): i for i, v in enumerate(weights)}
    kernel_grads, masked, masks = [], [], []
    for j, (kernel, mask) in enumerate(model.kernels_and_masks()):
        i = index.get(id(kernel))
        if i is None or grads[i] is None:
            continue
        if isinstance(grads[i], tf.IndexedSlices):  # embeddings
            grads[i] = tf.convert_to_tensor(grads[i])
        if store and model._kernel_gradient_buffers[j] is not None:
            g = grads[i] if scale is None else grads[i] / tf.cast(scale, grads[i].dtype)
            model._kernel_gradient_buffers[j].assign(g)
        kernel_grads.append(grads[i])
        if mask is not None:
            grads[i] = grads[i] * tf.cast(mask, grads[i].dtype)
        masked.append(grads[i])
        masks.append(mask)
    model.optimizer.apply_gradients(zip(grads, weights))
    if measure and kernel_grads:
        update_gradient_flow(model, kernel_grads, masked, masks, scale)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def update_gradient_flow(model, kernel_grads, masked, masks, scale):
    """Updates `model`'s gf/EGF trackers from one step's gradients."""
    replica = tf.distribute.get_replica_context()
    if replica is not None and replica.num_replicas_in_sync > 1:
        # Each replica holds its share of the batch gradient (the loss
        # is scaled by 1/replicas): the measures need the sum.
        kernel_grads = replica.all_reduce(
            tf.distribute.ReduceOp.SUM, kernel_grads)
        masked = [g if m is None else g * tf.cast(m, g.dtype)
                  for g, m in zip(kernel_grads, masks)]
    values = gradient_flow_measures(kernel_grads, masked)
    weight = None
    if scale is not None:
        values = {k: v / tf.cast(scale, v.dtype)
                  for k, v in values.items()}
        if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
            # An overflowing step is skipped by the optimizer: not a
            # gradient training follows, so not counted.
            weight = tf.cast(tf.math.is_finite(values["gf_1"]), tf.float32)
    for name, value in values.items():
        getattr(model, f"{name}_tracker").update_state(
            value, sample_weight=weight)


def kernel_gradient_buffers(model):
    """One non-trainable tf.Variable per masked layer (None for the
    others), the kernel's shape and dtype."""
    return [tf.Variable(tf.zeros(layer.kernel.shape, layer.kernel.dtype),
                        trainable=False,
                        name=layer.name.replace("/", "_") + "_kernel_grad")
            if layers_lib.is_masked_layer(layer) else None
            for layer in model.prunable_layers()]


def loss_scale(optimizer, dtype=tf.float32):
    """The factor `optimizer.scale_loss` multiplies the loss by, or None.

    (LossScaleOptimizer's dynamic scale, or an optimizer's
    `loss_scale_factor`.) Read before `apply_gradients`, which may change it.
    """
    if optimizer is None:
        return None
    if not (isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            or getattr(optimizer, "loss_scale_factor", None) is not None):
        return None
    return tf.identity(optimizer.scale_loss(tf.ones((), dtype)))


def unscale_for_distribution(loss):
    """`loss` times the replica count (Keras divides it under tf.distribute)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * replicas if replicas > 1 else loss


def pth_power_sum(g, p):
    """sum |g|^p of a float tensor, as float32 (`keras_egf.gradient_flow`)."""
    if p == 1:
        return tf.cast(tf.reduce_sum(tf.abs(g)), tf.float32)
    return tf.cast(2.0 * tf.nn.l2_loss(g), tf.float32)  # fused sum(g**2)
