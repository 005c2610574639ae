"""keras-egf on Keras's PyTorch backend (experimental): what needs torch.

The same functions as `keras_egf.backend.tensorflow`:
- `train_step(model, data, measure, recorder)`: `MaskedModel`'s training
  step, Keras's own (keras/src/backend/torch/trainer.py) with the kernel
  gradients masked: forward and loss, `backward()` (the masked layers'
  straight-through product makes each kernel's `.grad` the effective-kernel
  gradient g_l), mask them, record them, apply, update the measures;
- `make_step_function`: Keras's train function around a step;
- `gradients`, `hessian_vector_product`: torch.autograd on the variables'
  values mapped in a keras.StatelessScope;
- `loss_scale`; `replicas`, `pth_power_sum`, `as_tensor` and
  `on_one_replica` are `keras_egf.backend.common`'s.

docs/backends.md §4 says what is tested on torch and what is not.
"""

import warnings

import keras
import torch
from keras import ops

from keras_egf import layers as layers_lib
from keras_egf.backend.common import (
    as_tensor, on_one_replica, pth_power_sum, replicas, scales_loss)

# What `keras_egf.backend.get()` callers use (the same names on every backend).
__all__ = ["WIDEST_FLOAT", "train_step", "make_step_function", "loss_scale",
           "replicas", "on_one_replica", "gradients", "hessian_vector_product",
           "pth_power_sum", "as_tensor"]

WIDEST_FLOAT = "float64"


def train_step(model, data, measure, recorder=None):
    """One training step on torch: forward and loss, backward, mask the
    kernel gradients, record them (`recorder`), apply, measure."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    with layers_lib.effective_kernel_gradients(model._step_mask_product()):
        y_pred = model(x, training=True)
    model.zero_grad()
    loss = model._compute_loss(x=x, y=y, y_pred=y_pred,
                               sample_weight=sample_weight, training=True)
    batch_size = next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
    model._loss_tracker.update_state(loss, sample_weight=batch_size)
    scale = loss_scale(model.optimizer, loss.dtype)
    if scale is not None:
        loss = model.optimizer.scale_loss(loss)
    weights = model.trainable_weights[:]
    loss.backward()
    grads = [v.value.grad for v in weights]
    with torch.no_grad():
        grads, kernels = model.mask_kernel_gradients(weights, grads)
        if recorder is not None:
            recorder.write(recorder.recorded(kernels.kernels, kernels.grads, scale))
        model.optimizer.apply(grads, weights)
        if measure and kernels.grads:
            model.update_gradient_flow(kernels.grads, kernels.masked, scale)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def make_step_function(model, step, recorder=None, measure=False):
    """Keras's torch train function around `step(data, measure=measure)`,
    run eagerly (Keras's default on torch). Under `jit_compile=True` too,
    with a warning: a torch.compile'd masked step gave wrong measures
    under loss scaling (docs/backends.md §4). Keras's torch trainer
    takes one batch a call, so `steps_per_execution` > 1 is refused as
    Keras refuses it (the iterator would hand over several batches and the
    step would train on the first only)."""
    if model.steps_per_execution > 1:
        raise ValueError(
            "`steps_per_execution` must be 1 with the PyTorch backend. "
            f"Received: steps_per_execution={model.steps_per_execution}")
    if model.jit_compile and not getattr(model, "_warned_torch_compile", False):
        warnings.warn(
            "keras-egf's training step runs eagerly on the torch backend: "
            "jit_compile=True (torch.compile) is not used for MaskedModel "
            f"{model.name!r} (untested; docs/backends.md).", stacklevel=3)
        model._warned_torch_compile = True

    def one_step_on_data(data):
        return step(data[0], measure=measure)

    return one_step_on_data


def loss_scale(optimizer, dtype="float32"):
    """The factor `optimizer.scale_loss` multiplies the loss by, or None."""
    if not scales_loss(optimizer):
        return None
    return optimizer.scale_loss(ops.ones((), dtype)).detach()


def _values(variables):
    return [v.value.detach().clone().requires_grad_(True) for v in variables]


def gradients(fn, variables, state=()):
    """(fn(), d fn() / d variables): `fn` runs in a keras.StatelessScope
    mapping `variables` to copies of their values (and the (variable,
    value) pairs of `state`), so nothing it assigns reaches the model."""
    values = _values(variables)
    with keras.StatelessScope(state_mapping=list(zip(variables, values))
                              + list(state), collect_losses=True):
        value = fn()
    grads = torch.autograd.grad(value, values, allow_unused=True)
    return value.detach(), [torch.zeros_like(v) if g is None else g
                            for g, v in zip(grads, values)]


def hessian_vector_product(fn, variables, vectors):
    """H v for the Hessian H of fn() with respect to `variables` and the
    vectors v (one per variable), by double backpropagation."""
    values = _values(variables)
    with keras.StatelessScope(state_mapping=list(zip(variables, values)),
                              collect_losses=True):
        value = fn()
    grads = torch.autograd.grad(value, values, create_graph=True,
                                allow_unused=True)
    z = sum(torch.sum(g * ops.convert_to_tensor(v)) for g, v in
            zip(grads, vectors) if g is not None)
    products = torch.autograd.grad(z, values, allow_unused=True)
    return [torch.zeros_like(v) if h is None else h
            for h, v in zip(products, values)]
