"""Gradient flow measures, as pure functions on per-layer gradients.

`grads` is a list of per-layer gradient tensors g_l taken with respect to the
effective kernels W_l = theta_l * m_l (pruned positions included); `masks` the
matching 0/1 masks (None for a layer with no mask, meaning all ones).

- gradient_flow(grads, p)                  = || concat(g_1, ..., g_L) ||_p
- effective_gradient_flow(grads, masks, p) = (1/L) sum_l || g_l * m_l ||_p
- gradient_flow_measures(grads, masked)    = all four, by name
  (`GRADIENT_FLOW_METRICS`: gf_1, gf_2, egf_1, egf_2)
- mean_gradient(batches, ...)               = the gradient of the mean
  objective over a fixed batch set (the fixed-batch measure's gradient)

This module owns the measure names and the arithmetic: `MaskedModel`'s
training step (per-step measure), `keras_egf.callbacks.EGFCallback`
(fixed-batch measure) and the packed trainer (`keras_egf.packing`, whose
gradients carry a leading member axis: `members=True`) all call
`gradient_flow_measures`. For a dense network
(all masks one), EGF_1 == gf_1 / L. All four measures are homogeneous of
degree one in the gradients, so a loss scaled by s (mixed precision) gives
measures scaled by s: divide the four scalars, not the gradients.
"""

import functools

import keras
from keras import ops

from keras_egf import backend as backend_lib
from keras_egf import validation

SUPPORTED_NORMS = (1, 2)
GRADIENT_FLOW_METRICS = ("gf_1", "gf_2", "egf_1", "egf_2")


def _check_p(p):
    if isinstance(p, bool) or p not in SUPPORTED_NORMS:
        validation.fail("p", f"one of {list(SUPPORTED_NORMS)} (the norms "
                        "gradient flow is defined for)", p)


def _check_grads(grads, masks=None):
    if not grads:
        validation.fail("grads", "a non-empty list of per-layer gradients", grads)
    if masks is not None and len(masks) != len(grads):
        validation.fail("len(masks)", f"len(grads)={len(grads)} (one mask per "
                        "layer's gradient)", len(masks))


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


def _pth_power_sum(g, p, members=False):
    """sum |g|^p as float32, by the backend's own reduction; with
    `members`, one sum per entry of g's leading (member) axis."""
    return backend_lib.get().pth_power_sum(_as_float(g), p, members)


def layer_norms(grads, p, members=False):
    """Returns the per-layer norms ||g_l||_p: a vector (L,), or (L, K)
    with `members` (every g_l with a leading axis of K members)."""
    _check_p(p)
    _check_grads(grads)
    norms = ops.stack([_pth_power_sum(g, p, members) for g in grads])
    return norms if p == 1 else ops.sqrt(norms)


def gradient_flow(grads, p=2, members=False):
    """Plain gradient flow ||concat(grads)||_p, pruned positions included
    (with `members`, a vector: each member's own)."""
    _check_p(p)
    _check_grads(grads)
    # Left to right, as tf.add_n adds.
    total = functools.reduce(
        ops.add, [_pth_power_sum(g, p, members) for g in grads])
    return total if p == 1 else ops.sqrt(total)


def effective_gradient_flow(grads, masks=None, p=2):
    """Effective gradient flow: mean over layers of ||g_l * m_l||_p."""
    _check_p(p)
    _check_grads(grads, masks)
    if masks is not None:
        grads = masked_gradients(grads, masks)
    return ops.mean(layer_norms(grads, p))


def gradient_flow_measures(grads, masked_grads, per_layer=False, members=False):
    """gf_1, gf_2 (from `grads`) and egf_1, egf_2 (from `masked_grads`).

    Args:
        grads: per-layer gradients g_l with respect to the effective kernels.
        masked_grads: the same gradients times their masks, g_l * m_l (the
            training step already has them: they are what the optimizer
            receives); `masked_gradients(grads, masks)` makes them.
        per_layer: also return "layers_egf_1" / "layers_egf_2", the vectors
            of per-layer norms ||g_l * m_l||_p whose means are egf_1 / egf_2.
        members: every gradient has a leading axis of K members (a pack of
            models, `keras_egf.packing`): each measure is then a vector (K,)
            of the members' own measures, the per-layer norms (L, K).

    Returns:
        {name: float32 scalar tensor} keyed by `GRADIENT_FLOW_METRICS`.
    """
    _check_grads(grads, masked_grads)
    layers_1 = layer_norms(masked_grads, 1, members)
    layers_2 = layer_norms(masked_grads, 2, members)
    measures = {
        "gf_1": gradient_flow(grads, 1, members),
        "gf_2": gradient_flow(grads, 2, members),
        "egf_1": ops.mean(layers_1, axis=0),
        "egf_2": ops.mean(layers_2, axis=0),
    }
    if per_layer:
        measures.update(layers_egf_1=layers_1, layers_egf_2=layers_2)
    return measures


@keras.saving.register_keras_serializable(package="keras_egf")
class GradientFlowMean(keras.metrics.Metric):
    """The per-step measure's epoch means: the weighted means of the four
    measures (`GRADIENT_FLOW_METRICS`) over the measured steps.

    One (5,) variable holds the four weighted sums and the total weight, so
    a step costs one `assign_add` (four `keras.metrics.Mean`s cost eight
    variable updates, about 3 % of a 10 ms step on a 2-core CPU).
    `result()` is a dict {gf_1: .., gf_2: .., egf_1: .., egf_2: ..}, which
    Keras puts into the logs key by key; 0 before any measured step.

    `update_state(measures, scale=None, sample_weight=None)`: `measures`
    as `gradient_flow_measures` returns them; `scale` divides them (loss
    scaling); a step of weight 0 adds nothing, whatever its values (an
    overflowed step's inf/NaN included).
    """

    def __init__(self, name="gradient_flow", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.sums = self.add_variable(
            shape=(len(GRADIENT_FLOW_METRICS) + 1,), initializer="zeros",
            dtype="float32", name="sums")

    def update_state(self, measures, scale=None, sample_weight=None):
        values = ops.stack([ops.cast(measures[k], "float32")
                            for k in GRADIENT_FLOW_METRICS])
        if scale is not None:
            values = values / ops.cast(scale, "float32")
        if sample_weight is None:
            weight = ops.ones((1,), "float32")
        else:
            weight = ops.reshape(ops.cast(sample_weight, "float32"), (1,))
            values = ops.where(weight > 0, values * weight,
                               ops.zeros_like(values))
        self.sums.assign_add(ops.concatenate([values, weight]))

    def reset_state(self):
        self.sums.assign(ops.zeros(self.sums.shape, self.sums.dtype))

    def result(self):
        means = ops.divide_no_nan(self.sums[:-1], self.sums[-1])
        return {name: means[i] for i, name in enumerate(GRADIENT_FLOW_METRICS)}

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def fixed_batch_point(measures, layer_names, member=None):
    """`gradient_flow_measures(..., per_layer=True)` as plain floats:
    {measure: float, "layers": {layer name: {"egf_1": .., "egf_2": ..}}},
    the fixed-batch point `keras_egf.callbacks.EGFCallback` records;
    `member`: the index of one member's values (measures taken with
    `members=True`)."""
    values = {k: ops.convert_to_numpy(v) for k, v in measures.items()}
    if member is not None:
        values = {k: v[..., member] for k, v in values.items()}
    point = {m: float(values[m]) for m in GRADIENT_FLOW_METRICS}
    point["layers"] = {
        name: {"egf_1": float(a), "egf_2": float(b)}
        for name, a, b in zip(layer_names, values["layers_egf_1"],
                              values["layers_egf_2"])}
    return point


def mean_gradient(batches, gradients, batch_size):
    """The gradient of the mean objective over a fixed batch set: the
    gradients `gradients(batch)` (a list, one per layer) of each batch,
    weighted by its share `batch_size(batch)` of all the examples."""
    total = sum(batch_size(batch) for batch in batches)
    accumulated = None
    for batch in batches:
        weight = float(batch_size(batch)) / total
        weighted = [weight * g for g in gradients(batch)]
        accumulated = weighted if accumulated is None else [
            a + g for a, g in zip(accumulated, weighted)]
    return accumulated
