"""Pruning scores, one function per method: (model, batches, ...) ->
{masked layer name: score array of the kernel's shape}; higher = keep.

A score function only scores; `keras_egf.pruning.masks` turns scores into
exact top-k masks and `keras_egf.pruning.prune` runs iterative methods
(SynFlow, EGF-guided) round by round. Gradients are taken with respect to
the effective kernel kernel * mask (`layers.effective_kernel_gradients`), on
the model in inference mode (BatchNorm with its moving statistics), with the
loss `loss` (default: sparse categorical cross-entropy on logits).

- random:    uniform noise (seeded).
- magnitude: |W|, W = kernel * mask.
- snip:      |g * W|, g = dL/dW summed over `batches` (Lee et al. 2019).
- grasp:     W * (H g) (Wang et al. 2020): the paper scores -W * Hg and
             removes the highest; keeping the highest W * Hg is the same.
             Logits are divided by `temperature` (200, as in the authors'
             code); Hg by double backprop of g . stop_gradient(g).
- synflow:   |dR/dW * W| with R = sum(f(1)) of the network with |weights|
             and an all-ones input: data-free (Tanaka et al. 2020).
- egf:       |g * W| divided by its layer's sum (each layer weighs the same,
             as EGF weighs layers), g the effective-kernel gradient with the
             current masks: pruned paths carry no gradient, so kept weights
             are the ones gradient still flows through.
"""

import keras
import numpy as np
from keras import ops

from keras_egf import backend as backend_lib
from keras_egf import layers as layers_lib
from keras_egf.pruning.masks import masked_layers


def _default_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _check_batches(batches, method):
    batches = [tuple(b) for b in (batches or [])]
    if not batches:
        raise ValueError(f"Pruning method {method!r} needs data: pass "
                         "batches=[(x, y), ...]. Received: batches=None")
    return batches


def _effective(layer):
    return layer.kernel.numpy() * layer.mask.numpy()


def random_scores(model, batches=None, seed=None, **_):
    """Uniform random scores (the paper's default pruning), seeded."""
    rng = np.random.default_rng(seed)
    return {l.name: rng.random(tuple(l.kernel.shape)) for l in masked_layers(model)}


def magnitude_scores(model, batches=None, seed=None, **_):
    """|kernel * mask|: on the initialised or a trained model."""
    return {l.name: np.abs(_effective(l)) for l in masked_layers(model)}


def effective_kernel_loss_gradients(model, batches, loss=None, temperature=1.0):
    """dL/dW per masked layer, summed over `batches` (inference mode)."""
    loss = loss or _default_loss()
    layers = masked_layers(model)
    kernels = [l.kernel for l in layers]
    total = [np.zeros(tuple(k.shape)) for k in kernels]
    for x, y, *_ in batches:
        _, grads = backend_lib.get().gradients(
            _loss_function(model, x, y, loss, temperature), kernels)
        for i, g in enumerate(grads):
            total[i] += ops.convert_to_numpy(g).astype(np.float64)
    return {l.name: g for l, g in zip(layers, total)}


def _loss_function(model, x, y, loss, temperature):
    """The loss of `model` (inference mode, effective-kernel gradients) on
    one batch, as a function of nothing."""
    def value():
        with layers_lib.effective_kernel_gradients(
                layers_lib.MASK_PRODUCT_STRAIGHT_THROUGH):
            out = _single(model(x, training=False), "outputs", model)
        return loss(_single(y, "targets", model), out / temperature)

    return value


def _single(value, what, model):
    """The one tensor of a single-output structure (a dict or list of one)."""
    flat = keras.tree.flatten(value)
    if len(flat) != 1:
        raise ValueError(
            f"Data-driven pruning scores a single-output model; model "
            f"{model.name!r} has {len(flat)} {what}. Prune with a data-free "
            "method (magnitude, random, synflow) or score each output's "
            "model separately.")
    return flat[0]


def snip_scores(model, batches=None, seed=None, loss=None, **_):
    """|g * W| (connection sensitivity), g summed over `batches`."""
    grads = effective_kernel_loss_gradients(
        model, _check_batches(batches, "snip"), loss)
    return {l.name: np.abs(grads[l.name] * _effective(l))
            for l in masked_layers(model)}


def grasp_scores(model, batches=None, seed=None, loss=None, temperature=200.0,
                 **_):
    """W * (H g): keep the highest (the paper removes the highest -W * Hg)."""
    batches = _check_batches(batches, "grasp")
    loss = loss or _default_loss()
    layers = masked_layers(model)
    kernels = [l.kernel for l in layers]
    stopped = effective_kernel_loss_gradients(model, batches, loss, temperature)
    stopped = [ops.convert_to_tensor(stopped[l.name], dtype=k.dtype)
               for l, k in zip(layers, kernels)]
    hg = [np.zeros(tuple(k.shape)) for k in kernels]
    for x, y, *_ in batches:
        hvp = backend_lib.get().hessian_vector_product(
            _loss_function(model, x, y, loss, temperature), kernels, stopped)
        for i, h in enumerate(hvp):
            hg[i] += ops.convert_to_numpy(h).astype(np.float64)
    return {l.name: _effective(l) * h for l, h in zip(layers, hg)}


def synflow_scores(model, batches=None, seed=None, **_):
    """|dR/dW * W|, R = sum(f(1)) with every weight replaced by its absolute
    value (the signs are restored afterwards); no data."""
    layers = masked_layers(model)
    kernels = [l.kernel for l in layers]
    saved = [w.numpy() for w in model.trainable_weights]
    try:
        for w, value in zip(model.trainable_weights, saved):
            w.assign(np.abs(value))
        ones = [ops.ones((1, *tuple(i.shape[1:])), dtype=i.dtype or "float32")
                for i in model.inputs]

        def r():
            out = model(ones if len(ones) > 1 else ones[0], training=False)
            return ops.sum(ops.cast(out, backend_lib.get().WIDEST_FLOAT))

        _, grads = backend_lib.get().gradients(r, kernels)
        scores = {l.name: np.abs(ops.convert_to_numpy(g).astype(np.float64)
                                 * _effective(l))
                  for l, g in zip(layers, grads)}
    finally:
        for w, value in zip(model.trainable_weights, saved):
            w.assign(value)
    return scores


def egf_scores(model, batches=None, seed=None, loss=None, **_):
    """|g * W| normalised per layer (each layer's scores sum to 1)."""
    grads = effective_kernel_loss_gradients(
        model, _check_batches(batches, "egf"), loss)
    scores = {}
    for l in masked_layers(model):
        s = np.abs(grads[l.name] * _effective(l))
        total = s.sum()
        scores[l.name] = s / total if total > 0 else s
    return scores
