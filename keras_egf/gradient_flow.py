"""Gradient flow measures, as pure functions on per-layer gradients.

`grads` is a list of per-layer gradient tensors g_l taken with respect to the
effective kernels W_l = theta_l * m_l (pruned positions included); `masks` the
matching 0/1 masks (None for a layer with no mask, meaning all ones).

- gradient_flow(grads, p)                  = || concat(g_1, ..., g_L) ||_p
- effective_gradient_flow(grads, masks, p) = (1/L) sum_l || g_l * m_l ||_p
- gradient_flow_measures(grads, masked)    = all four, by name
  (`GRADIENT_FLOW_METRICS`: gf_1, gf_2, egf_1, egf_2)

This module owns the measure names and the arithmetic: `MaskedModel`'s
training step (per-step measure) and `keras_egf.callbacks.EGFCallback`
(fixed-batch measure) both call `gradient_flow_measures`. For a dense network
(all masks one), EGF_1 == gf_1 / L. All four measures are homogeneous of
degree one in the gradients, so a loss scaled by s (mixed precision) gives
measures scaled by s: divide the four scalars, not the gradients.
"""

import functools

import keras
from keras import ops

from keras_egf import backend as backend_lib

SUPPORTED_NORMS = (1, 2)
GRADIENT_FLOW_METRICS = ("gf_1", "gf_2", "egf_1", "egf_2")


def _check_p(p):
    if isinstance(p, bool) or p not in SUPPORTED_NORMS:
        raise ValueError(
            f"Gradient flow is defined for p in {SUPPORTED_NORMS}. "
            f"Received: p={p!r}"
        )


def _check_grads(grads, masks=None):
    if not grads:
        raise ValueError("Received an empty list of gradients: grads=[]")
    if masks is not None and len(masks) != len(grads):
        raise ValueError(
            "grads and masks must have one entry per layer. Received: "
            f"len(grads)={len(grads)}, len(masks)={len(masks)}"
        )


def _as_float(t):
    t = backend_lib.get().as_tensor(t)
    return t if keras.backend.is_float_dtype(t.dtype) else ops.cast(t, "float32")


def masked_gradients(grads, masks):
    """Returns [g_l * m_l]; a None mask leaves the gradient as is."""
    _check_grads(grads, masks)
    out = []
    for g, m in zip(grads, masks):
        g = _as_float(g)
        out.append(g if m is None else g * ops.cast(m, g.dtype))
    return out


def _pth_power_sum(g, p):
    """sum |g|^p as float32, by the backend's own reduction."""
    return backend_lib.get().pth_power_sum(_as_float(g), p)


def layer_norms(grads, p):
    """Returns a vector of the per-layer norms ||g_l||_p."""
    _check_p(p)
    _check_grads(grads)
    norms = ops.stack([_pth_power_sum(g, p) for g in grads])
    return norms if p == 1 else ops.sqrt(norms)


def gradient_flow(grads, p=2):
    """Plain gradient flow ||concat(grads)||_p, pruned positions included."""
    _check_p(p)
    _check_grads(grads)
    # Left to right, as tf.add_n adds.
    total = functools.reduce(ops.add, [_pth_power_sum(g, p) for g in grads])
    return total if p == 1 else ops.sqrt(total)


def effective_gradient_flow(grads, masks=None, p=2):
    """Effective gradient flow: mean over layers of ||g_l * m_l||_p."""
    _check_p(p)
    _check_grads(grads, masks)
    if masks is not None:
        grads = masked_gradients(grads, masks)
    return ops.mean(layer_norms(grads, p))


def gradient_flow_measures(grads, masked_grads, per_layer=False):
    """gf_1, gf_2 (from `grads`) and egf_1, egf_2 (from `masked_grads`).

    Args:
        grads: per-layer gradients g_l with respect to the effective kernels.
        masked_grads: the same gradients times their masks, g_l * m_l (the
            training step already has them: they are what the optimizer
            receives); `masked_gradients(grads, masks)` makes them.
        per_layer: also return "layers_egf_1" / "layers_egf_2", the vectors
            of per-layer norms ||g_l * m_l||_p whose means are egf_1 / egf_2.

    Returns:
        {name: float32 scalar tensor} keyed by `GRADIENT_FLOW_METRICS`.
    """
    _check_grads(grads, masked_grads)
    layers_1 = layer_norms(masked_grads, 1)
    layers_2 = layer_norms(masked_grads, 2)
    measures = {
        "gf_1": gradient_flow(grads, 1),
        "gf_2": gradient_flow(grads, 2),
        "egf_1": ops.mean(layers_1),
        "egf_2": ops.mean(layers_2),
    }
    if per_layer:
        measures.update(layers_egf_1=layers_1, layers_egf_2=layers_2)
    return measures
