"""Pruning methods as scores: exact counts, determinism, scores against
independent recomputations (a plain-Dense twin with its own GradientTape,
NumPy), the SC-SDC pair with any method, and layer collapse."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_egf as ke
from keras_egf import pruning
from keras_egf.pruning import collapse, scores
from reference import effective_twin

BUILD = dict(input_shape=(12,), hidden_widths=[16, 16], num_classes=3)


def _model(seed=0, **kw):
    return ke.build_mlp(**{**BUILD, **kw}, seed=seed)


def _batches(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype("float32")
    y = rng.integers(0, 3, n)
    return [(x[: n // 2], y[: n // 2]), (x[n // 2:], y[n // 2:])]


def _twin_grads(model, batches, temperature=1.0):
    twin = effective_twin(model, **BUILD)
    kernels = [l.kernel for l in ke.prunable_layers(twin)]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    total = [np.zeros(k.shape) for k in kernels]
    for x, y in batches:
        with tf.GradientTape() as tape:
            value = loss(y, twin(x, training=False) / temperature)
        for i, g in enumerate(tape.gradient(value, kernels)):
            total[i] += g.numpy()
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
    for x, y in batches:  # Hg by double backprop on the twin
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                value = loss(y, twin(x, training=False) / 200.0)
            g = inner.gradient(value, kernels)
            z = sum(tf.reduce_sum(a * b) for a, b in zip(g, stopped))
        for i, h in enumerate(outer.gradient(z, kernels)):
            hg[i] += h.numpy()
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
        np.testing.assert_allclose(h, (p - m) / (2 * eps), rtol=0.05,
                                   atol=1e-3 * np.abs(h).max())


def _twin_grads_from(twin, kernels, batches):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    total = [np.zeros(k.shape) for k in kernels]
    for x, y in batches:
        with tf.GradientTape() as tape:
            value = loss(y, twin(x, training=False) / 200.0)
        for i, g in enumerate(tape.gradient(value, kernels)):
            total[i] += g.numpy().astype(np.float64)
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


@pytest.mark.parametrize("method", pruning.all_pruning_method_names())
@pytest.mark.parametrize("scope, distribution", [("layer", "uniform"),
                                                 ("layer", "erk"),
                                                 ("global", "uniform")])
def test_every_method_hits_the_sparsity_exactly_and_is_deterministic(
        method, scope, distribution):
    batches = _batches()
    runs = []
    for _ in range(2):
        model = _model(seed=5)
        masks = ke.prune(model, 0.8, method=method, scope=scope,
                         distribution=distribution, seed=7, batches=batches,
                         rounds=3 if method in ("synflow", "egf") else None)
        runs.append(masks)
        shapes = {l.name: tuple(l.kernel.shape) for l in ke.prunable_layers(model)}
        if scope == "layer":
            expected = pruning.layer_counts(model, 0.8, distribution)
            assert {n: int(m.sum()) for n, m in masks.items()} == expected
        else:
            total = sum(int(np.prod(s)) for s in shapes.values())
            assert sum(int(m.sum()) for m in masks.values()) == \
                pruning.kept_count(total, 0.8)
        for layer in ke.prunable_layers(model):  # applied, kernel zeroed
            np.testing.assert_array_equal(layer.mask.numpy(), masks[layer.name])
            assert np.all(layer.kernel.numpy()[masks[layer.name] == 0] == 0)
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])


def test_methods_differ_and_errors_name_the_problem():
    batches = _batches()
    masks = {m: ke.prune(_model(seed=1), 0.9, method=m, seed=0, batches=batches,
                         rounds=2 if m in ("synflow", "egf") else None)
             for m in ("random", "magnitude", "snip")}
    assert not np.array_equal(masks["random"]["hidden_0"], masks["snip"]["hidden_0"])
    assert not np.array_equal(masks["magnitude"]["hidden_0"], masks["snip"]["hidden_0"])
    with pytest.raises(ValueError, match="'snip' needs data"):
        ke.prune(_model(), 0.9, method="snip")
    with pytest.raises(ValueError, match="Unknown pruning method 'obd'.*'egf'"):
        ke.prune(_model(), 0.9, method="obd")
    with pytest.raises(ValueError, match="scope='all'"):
        ke.prune(_model(), 0.9, scope="all")


def test_iterative_rounds_only_make_masks_sparser():
    model = _model(seed=3)
    ke.prune(model, 0.5, seed=0)
    first = pruning.get_masks(model)
    masks = ke.prune(model, 0.9, method="synflow", rounds=4)
    for name, mask in masks.items():
        assert np.all(mask <= first[name])  # nothing regrown


@pytest.mark.parametrize("method", ["random", "snip", "egf"])
def test_same_capacity_pair_with_any_method(method):
    batches = [(np.random.default_rng(0).normal(size=(32, 12)).astype("float32"),
                np.arange(32) % 3)]
    pair = ke.same_capacity_pair((12,), [8, 8], 3, 3, seed=0, pruning=method,
                                 batches=batches)
    assert ke.active_weights(pair.sparse) == ke.active_weights(pair.dense)
    if method != "random":
        random = ke.same_capacity_pair((12,), [8, 8], 3, 3, seed=0)
        assert not np.array_equal(pair.sparse.get_layer("hidden_0").mask.numpy(),
                                  random.sparse.get_layer("hidden_0").mask.numpy())


def test_egf_guided_pruning_keeps_every_layer_alive_where_others_collapse():
    rng = np.random.default_rng(0)
    x = rng.random((128, 64)).astype("float32")
    y = rng.integers(0, 10, 128)
    batches = [(x[:64], y[:64]), (x[64:], y[64:])]
    table = {}
    for sparsity in (0.99, 0.999):
        for method in pruning.all_pruning_method_names():
            model = ke.build_mlp((64,), [64, 64, 64, 64], 10, seed=1)
            ke.prune(model, sparsity, method=method, scope="global", seed=0,
                     batches=batches)
            table[(method, sparsity)] = collapse.layer_collapse(model, batches)
    for sparsity in (0.99, 0.999):
        report = table[("egf", sparsity)]
        assert report.collapsed == [], (sparsity, report)
        assert all(h.kept >= 1 and h.grad_norm > 0 for h in report.layers)
    # Global magnitude pruning empties a layer at 99.9 % here.
    assert table[("magnitude", 0.999)].collapsed


def test_top_k_mask_equals_a_stable_sort_with_ties_and_pruned_entries():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 80))
        s = rng.integers(0, 5, n).astype(float)  # many ties
        if trial % 3 == 0:
            s[rng.random(n) < 0.3] = -np.inf  # already pruned
        count = int(rng.integers(0, n + 1))
        expected = np.zeros(n, np.float32)
        expected[np.argsort(-s, kind="stable")[:count]] = 1.0
        np.testing.assert_array_equal(pruning.top_k_mask(s, count), expected)


def test_erk_on_4d_conv_kernels_counts_the_spatial_dimensions():
    from keras_egf.pruning import distributions

    # Two convolutions: density ratio (sum/prod of the whole 4-D shape),
    # 30/1152 : 38/2304 = 1.5789; without the 3x3 it would be 1.5.
    s = distributions.erk({"c1": (3, 3, 8, 16), "c2": (3, 3, 16, 16)}, 0.8)
    d1, d2 = 1 - s["c1"], 1 - s["c2"]
    assert d1 / d2 == pytest.approx((30 / 1152) / (38 / 2304), rel=1e-9)
    assert d1 * 1152 + d2 * 2304 == pytest.approx(0.2 * (1152 + 2304))
    # A conv and a small dense layer that ERK would make denser than 1: it is
    # kept dense, the conv makes up for it (by hand: 1 - 2144/4608).
    s = distributions.erk({"conv": (3, 3, 16, 32), "head": (32, 10)}, 0.5)
    assert s["head"] == 0.0
    assert s["conv"] == pytest.approx(1 - 2144 / 4608, rel=1e-9)
