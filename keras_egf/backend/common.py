"""What the backends share, in `keras.ops`: the JAX and torch modules
take these as their own; TensorFlow overrides `pth_power_sum` (fused
kernels) and the replica helpers (tf.distribute)."""

import keras
from keras import ops


def scales_loss(optimizer):
    """Whether `optimizer.scale_loss` scales the loss (a LossScaleOptimizer,
    or an optimizer with a `loss_scale_factor`)."""
    return optimizer is not None and (
        isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        or getattr(optimizer, "loss_scale_factor", None) is not None)


def pth_power_sum(g, p, members=False):
    """sum |g|^p of a float tensor, as float32 (`keras_egf.gradient_flow`);
    with `members`, one sum per entry of g's leading axis."""
    axis = None
    if members:
        g, axis = ops.reshape(g, (g.shape[0], -1)), 1
    power = ops.abs(g) if p == 1 else ops.square(g)
    return ops.cast(ops.sum(power, axis=axis), "float32")


def as_tensor(g):
    """`g` as a tensor of the backend."""
    return ops.convert_to_tensor(g)


def replicas():
    """Replicas a loss is divided over (1: the step runs on one device)."""
    return 1


def on_one_replica(fn, *args):
    """fn(*args) (one device)."""
    return fn(*args)
