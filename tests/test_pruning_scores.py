"""Pruning scores (keras_egf.pruning.scores) against independent
recomputations: SNIP and GraSP on a plain-Dense twin with its own
GradientTape (GraSP's Hessian-gradient product also by finite
differences), SynFlow by its published formula in NumPy."""

import keras
import numpy as np

import keras_egf as ke
from keras_egf.pruning import scores
from reference import BACKEND, effective_twin, gradients, hessian_vector_product

BUILD = dict(input_shape=(12,), hidden_widths=[16, 16], num_classes=3)


def _model(seed=0):
    return ke.build_mlp(**BUILD, seed=seed)


def _batches(seed=0):
    """Two batches of 16."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(32, 12)).astype("float32"), rng.integers(0, 3, 32)
    return [(x[:16], y[:16]), (x[16:], y[16:])]


def _twin_grads(model, batches, temperature=1.0):
    twin = effective_twin(model, **BUILD)
    kernels = [l.kernel for l in ke.prunable_layers(twin)]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    total = [np.zeros(k.shape) for k in kernels]
    for x, y in batches:
        grads = gradients(
            lambda x=x, y=y: loss(y, twin(x, training=False) / temperature), kernels)
        for i, g in enumerate(grads):
            total[i] += g
    return twin, kernels, total


def _effective(model):
    return [l.kernel.numpy() * l.mask.numpy() for l in ke.prunable_layers(model)]


def test_snip_scores_equal_twin_recomputation():
    model = _model()
    ke.prune(model, 0.3, seed=1)  # a partly pruned model: W = kernel * mask
    batches = _batches()
    got = scores.snip_scores(model, batches)
    _, _, grads = _twin_grads(model, batches)
    for layer, g, w in zip(ke.prunable_layers(model), grads, _effective(model)):
        np.testing.assert_allclose(got[layer.name], np.abs(g * w), rtol=1e-5,
                                   atol=1e-9)


def test_grasp_scores_equal_twin_recomputation():
    model = _model(seed=2)
    batches = _batches(seed=3)
    got = scores.grasp_scores(model, batches, temperature=200.0)
    twin, kernels, stopped = _twin_grads(model, batches, temperature=200.0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    hg = [np.zeros(k.shape) for k in kernels]
    stopped32 = [s.astype("float32") for s in stopped]
    for x, y in batches:  # Hg by double backprop on the twin
        products = hessian_vector_product(
            lambda x=x, y=y: loss(y, twin(x, training=False) / 200.0), kernels,
            stopped32)
        for i, h in enumerate(products):
            hg[i] += h
    for layer, h, w in zip(ke.prunable_layers(model), hg, _effective(model)):
        np.testing.assert_allclose(got[layer.name], w * h, rtol=1e-5,
                                   atol=1e-12)
    # Hg also matches central finite differences of the gradient along g.
    eps = 1e-2
    plus, minus = [], []
    for sign, out in ((1, plus), (-1, minus)):
        for k, w, s in zip(kernels, _effective(model), stopped):
            k.assign(w + sign * eps * s)
        out.extend(_twin_grads_from(twin, kernels, batches))
    for k, w in zip(kernels, _effective(model)):
        k.assign(w)
    for h, p, m in zip(hg, plus, minus):
        # atol: float32 finite differences; on torch one entry in 256 near
        # zero is 1e-8 off (1.4e-3 of the largest |Hg|), so torch alone
        # gets 2e-3.
        np.testing.assert_allclose(h, (p - m) / (2 * eps), rtol=0.05,
                                   atol=(2e-3 if BACKEND == "torch" else 1e-3)
                                   * np.abs(h).max())


def _twin_grads_from(twin, kernels, batches):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    total = [np.zeros(k.shape) for k in kernels]
    for x, y in batches:
        grads = gradients(
            lambda x=x, y=y: loss(y, twin(x, training=False) / 200.0), kernels)
        for i, g in enumerate(grads):
            total[i] += g.astype(np.float64)
    return total


def test_synflow_scores_equal_the_published_formula():
    model = _model(seed=4)
    ke.prune(model, 0.5, seed=0)
    w = [np.abs(x).astype(np.float64) for x in _effective(model)]
    b = [np.abs(l.bias.numpy()).astype(np.float64) for l in ke.prunable_layers(model)]
    b[0] += 0.1  # make biases matter (they are 0 at initialisation)
    for layer, bias in zip(ke.prunable_layers(model), b):
        layer.bias.assign(-bias)  # the sign must not matter: |.| is taken
    before = [v.numpy().copy() for v in model.weights]
    got = scores.synflow_scores(model)
    # R = 1^T f(1) for |W|, |b|: ReLU of non-negatives is the identity.
    acts = [np.ones(12)]
    for wl, bl in zip(w, b):
        acts.append(acts[-1] @ wl + bl)
    back = [np.ones(3)]
    for wl in reversed(w[1:]):
        back.insert(0, wl @ back[0])
    for layer, wl, a, c in zip(ke.prunable_layers(model), w, acts[:-1], back):
        expected = np.abs(np.outer(a, c) * wl)
        np.testing.assert_allclose(got[layer.name], expected, rtol=1e-5)
    for v, old in zip(model.weights, before):  # signs restored
        np.testing.assert_array_equal(v.numpy(), old)
