"""Gradient flow measures (design.md section 2), as pure functions.

`grads` is a list of per-layer gradient tensors g_l taken with respect to the
effective kernels W_l = theta_l * m_l (pruned positions included); `masks` the
matching 0/1 masks (None for a layer with no mask, meaning all ones).

- gradient_flow(grads, p)            = || concat(g_1, ..., g_L) ||_p
- effective_gradient_flow(grads, masks, p) = (1/L) sum_l || g_l * m_l ||_p

For a dense network (all masks one), EGF_1 == gf_1 / L.
"""

import tensorflow as tf

SUPPORTED_NORMS = (1, 2)


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
    t = tf.convert_to_tensor(t)
    return t if t.dtype.is_floating else tf.cast(t, tf.float32)


def masked_gradients(grads, masks):
    """Returns [g_l * m_l]; a None mask leaves the gradient as is."""
    _check_grads(grads, masks)
    out = []
    for g, m in zip(grads, masks):
        g = _as_float(g)
        out.append(g if m is None else g * tf.cast(m, g.dtype))
    return out


def _pth_power_sum(g, p):
    g = _as_float(g)
    if p == 1:
        return tf.reduce_sum(tf.abs(g))
    return 2.0 * tf.nn.l2_loss(g)  # one fused kernel for sum(g**2)


def layer_norms(grads, p):
    """Returns a vector of the per-layer norms ||g_l||_p."""
    _check_p(p)
    _check_grads(grads)
    sums = [_pth_power_sum(g, p) for g in grads]
    norms = tf.stack([tf.cast(s, tf.float32) for s in sums])
    return norms if p == 1 else tf.sqrt(norms)


def gradient_flow(grads, p=2):
    """Plain gradient flow ||concat(grads)||_p, pruned positions included."""
    _check_p(p)
    _check_grads(grads)
    total = tf.add_n([tf.cast(_pth_power_sum(g, p), tf.float32) for g in grads])
    return total if p == 1 else tf.sqrt(total)


def effective_gradient_flow(grads, masks=None, p=2):
    """Effective gradient flow: mean over layers of ||g_l * m_l||_p."""
    _check_p(p)
    _check_grads(grads, masks)
    if masks is not None:
        grads = masked_gradients(grads, masks)
    return tf.reduce_mean(layer_norms(grads, p))
