"""keras-egf on Keras's JAX backend: what needs JAX itself.

The same functions as `keras_egf.backend.tensorflow`:
- `train_step(model, state, data, measure, recorder)`: `MaskedModel`'s
  training step, built like Keras's own (keras/src/backend/jax/trainer.py):
  stateless, state = (trainable, non-trainable, optimizer, metrics
  variables). One `jax.value_and_grad` gives the gradients with respect to
  every trainable variable, kernels included, which the masked layers' mask
  product (straight-through, or the kernel as is) makes the effective-kernel
  gradients g_l; they are masked for the optimizer, and the four measures
  come from the same gradients. `test_step` is Keras's own.
- `make_step_function`: jits a step as Keras does; a recording step
  returns its kernel gradients and they are written to its
  `GradientRecorder` after it (RigL);
- `gradients`, `hessian_vector_product`: one gradient helper for the EGF
  callback and the pruning scores;
- `loss_scale`; `replicas`, `pth_power_sum`, `as_tensor` and
  `on_one_replica` are `keras_egf.backend.common`'s.
"""

import functools

import jax
import keras
from keras import ops

from keras_egf import layers as layers_lib
from keras_egf.backend.common import (
    as_tensor, on_one_replica, pth_power_sum, replicas, scales_loss)

# What `keras_egf.backend.get()` callers use (the same names on every backend).
__all__ = ["WIDEST_FLOAT", "train_step", "make_step_function", "loss_scale",
           "replicas", "on_one_replica", "gradients", "hessian_vector_product",
           "pth_power_sum", "as_tensor"]

# float64 only where JAX allows it (jax_enable_x64; off by default).
WIDEST_FLOAT = "float64" if jax.config.jax_enable_x64 else "float32"


def train_step(model, state, data, measure, recorder=None):
    """One training step (Keras's JAX signature): forward and loss,
    gradients, mask them, apply, update the measures (`measure`). Returns
    (logs, state), or ((logs, recorded kernel gradients), state) with a
    `recorder`."""
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    mode = model._step_mask_product()

    def objective(trainable):
        with layers_lib.effective_kernel_gradients(mode):
            return model.compute_loss_and_updates(
                trainable, non_trainable, metrics_variables, x, y,
                sample_weight, training=True,
                optimizer_variables=optimizer_variables)

    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
    unscaled_loss, y_pred, new_non_trainable, metrics_variables = aux
    with keras.StatelessScope(state_mapping=list(
            zip(model.optimizer.variables, optimizer_variables))):
        scale = loss_scale(model.optimizer, loss.dtype)

    grads, kernels = model.mask_kernel_gradients(
        model.trainable_variables, grads, mask_values=dict(
            zip(map(id, model.non_trainable_variables), non_trainable)))
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, grads, trainable)

    with keras.StatelessScope(state_mapping=list(
            zip(model.metrics_variables, metrics_variables))) as scope:
        batch_size = next(i for i in keras.tree.flatten(x)
                          if i is not None).shape[0]
        model._loss_tracker.update_state(unscaled_loss,
                                         sample_weight=batch_size)
        if measure and kernels.grads:
            model.update_gradient_flow(kernels.grads, kernels.masked, scale)
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    metrics_variables = [_current(scope, v) for v in model.metrics_variables]
    state = (trainable, new_non_trainable, optimizer_variables,
             metrics_variables)
    if recorder is not None:
        logs = (logs, recorder.recorded(kernels.kernels, kernels.grads, scale))
    return logs, state


def _current(scope, variable):
    value = scope.get_current_value(variable)
    return variable.value if value is None else value


def make_step_function(model, step, recorder=None, measure=False):
    """Keras's train function around `step(state, data, measure=measure)`:
    jitted unless the model runs eagerly; a recording step's gradients are
    written to `recorder` after it (outside the jitted step)."""
    step = functools.partial(step, measure=measure)
    if not model.run_eagerly and model.jit_compile:
        step = jax.jit(step, donate_argnums=0)
    function = model._make_function(step)
    if recorder is None:
        return function

    def recording(state, iterator):
        (logs, recorded), state = function(state, iterator)
        recorder.write(recorded)
        return logs, state

    return recording


def loss_scale(optimizer, dtype="float32"):
    """The factor `optimizer.scale_loss` multiplies the loss by, or None
    (read inside a StatelessScope over the optimizer's variables in a
    step)."""
    if not scales_loss(optimizer):
        return None
    return optimizer.scale_loss(ops.ones((), dtype))


def _stateless(fn, variables, state):
    """fn as a function of the variables' values."""
    def value(values):
        with keras.StatelessScope(
                state_mapping=list(zip(variables, values)) + list(state),
                collect_losses=True):
            return fn()

    return value


def gradients(fn, variables, state=()):
    """(fn(), d fn() / d variables): `fn` runs in a keras.StatelessScope
    mapping `variables` to their values (and the (variable, value) pairs of
    `state`), so nothing it assigns reaches the model."""
    return jax.value_and_grad(_stateless(fn, variables, state))(
        [v.value for v in variables])


def hessian_vector_product(fn, variables, vectors):
    """H v for the Hessian H of fn() with respect to `variables` and the
    vectors v (one per variable): the gradient of sum(grad(fn) * v)."""
    grad = jax.grad(_stateless(fn, variables, ()))

    def dot(values):
        return sum(ops.sum(g * v) for g, v in zip(grad(values), vectors))

    return jax.grad(dot)([v.value for v in variables])
