"""From scores to masks (keras_egf.pruning.masks): exact counts per layer,
seeds, excluded layers kept dense, names checked, magnitude's largest
entries, a registered score's masks, and top-k selection against a stable
sort."""

import math

import numpy as np
import pytest

import keras_egf as ke
from keras_egf import pruning
from keras_egf.pruning.masks import top_k_indices


def _model():
    return ke.build_mlp((20,), [30, 30], 5, seed=0)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_random_masks_keep_an_exact_count_per_layer(sparsity):
    model = _model()
    masks = ke.random_masks(model, sparsity, seed=1)
    for layer in ke.prunable_layers(model):
        size = int(np.prod(layer.kernel.shape))
        assert masks[layer.name].sum() == max(1, round((1 - sparsity) * size))
        assert set(np.unique(masks[layer.name])) <= {0.0, 1.0}


def test_same_seed_same_masks_and_other_seed_differs():
    a = ke.random_masks(_model(), 0.8, seed=7)
    b = ke.random_masks(_model(), 0.8, seed=7)
    c = ke.random_masks(_model(), 0.8, seed=8)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert any((a[n] != c[n]).any() for n in a)


def test_excluded_layer_stays_dense():
    model = _model()
    masks = ke.prune(model, 0.9, seed=0, exclude=["output"])
    assert masks["output"].all()
    assert ke.active_weights(model)["output"] == 30 * 5
    assert ke.active_weights(model)["hidden_0"] == round(0.1 * 20 * 30)


@pytest.mark.parametrize("bad", [1.2, -0.1, 1.0, float("nan"), "x"])
def test_bad_sparsity_named(bad):
    with pytest.raises(ValueError, match=f"sparsity={bad!r}" if not isinstance(bad, float) or not math.isnan(bad) else "sparsity=nan"):
        ke.random_masks(_model(), bad)


def test_unknown_names_list_supported_ones():
    with pytest.raises(ValueError, match="uniform"):
        ke.random_masks(_model(), 0.5, distribution="bogus")
    with pytest.raises(ValueError, match="random"):
        ke.prune(_model(), 0.5, method="bogus")
    with pytest.raises(ValueError, match="nope"):
        ke.random_masks(_model(), 0.5, exclude=["nope"])
    with pytest.raises(ValueError, match="not masked layers"):
        ke.apply_masks(_model(), {"nope": np.ones((2, 2))})


def test_erk_masks_on_a_model():
    model = _model()
    masks = ke.prune(model, 0.8, distribution="erk", seed=0)
    counts = ke.active_weights(model)
    total = sum(np.prod(l.kernel.shape) for l in ke.prunable_layers(model))
    assert abs(sum(counts.values()) - 0.2 * total) <= len(masks)


def test_magnitude_masks_keep_largest_entries():
    model = _model()
    layer = ke.prunable_layers(model)[0]
    kernel = layer.kernel.numpy().copy()
    masks = ke.prune(model, 0.75, method="magnitude")
    kept = np.abs(kernel[masks[layer.name] == 1])
    dropped = np.abs(kernel[masks[layer.name] == 0])
    assert kept.min() >= dropped.max()
    assert masks[layer.name].sum() == 150


def test_register_pruning_method():
    def first_entries_last(model, batches=None, seed=None, **options):
        """A score: the first kernel entry of each layer scores lowest."""
        out = {}
        for l in pruning.masked_layers(model):
            s = np.ones(l.kernel.shape)
            s.flat[0] = 0.0
            out[l.name] = s
        return out

    ke.register_pruning_method("first_entries_last", first_entries_last)
    assert "first_entries_last" in ke.all_pruning_method_names()
    model = _model()
    sizes = {l.name: int(np.prod(l.kernel.shape)) for l in ke.prunable_layers(model)}
    masks = ke.prune(model, method="first_entries_last",
                     counts={n: size - 1 for n, size in sizes.items()})
    for layer in ke.prunable_layers(model):  # exactly the lowest score goes
        assert masks[layer.name].flat[0] == 0
        assert masks[layer.name].sum() == masks[layer.name].size - 1
        assert layer.kernel.numpy().flat[0] == 0.0
    with pytest.raises(ValueError, match="`score` must be callable. Received: score="):
        ke.register_pruning_method("bad", None)


def test_top_k_indices_equals_a_stable_sort_on_duplicate_heavy_scores():
    """The selection settles runs of one value (-inf at excluded positions,
    exact zeros at dead units, a shared top value) before partitioning:
    it must keep exactly what a stable descending sort keeps, NaN lowest."""
    rng = np.random.default_rng(0)

    def stable(s, count):
        s = np.where(np.isnan(s), -np.inf, np.asarray(s, np.float64).ravel())
        return np.sort(np.argsort(-s, kind="stable")[:count])

    makers = [lambda n: rng.random(n),
              lambda n: rng.integers(0, 3, n).astype(float),
              lambda n: np.where(rng.random(n) < 0.9, 0.0, rng.random(n)),
              lambda n: np.where(rng.random(n) < 0.9, -np.inf, rng.random(n)).astype("float32"),
              lambda n: np.where(rng.random(n) < 0.8, 1.0, rng.random(n)),
              lambda n: np.where(rng.random(n) < 0.3, np.nan,
                                 np.where(rng.random(n) < 0.4, 0.0, rng.random(n)))]
    for trial in range(1200):
        n = int(rng.integers(1, 50))
        scores = makers[trial % len(makers)](n)
        count = int(rng.integers(0, n + 1))
        np.testing.assert_array_equal(top_k_indices(scores, count),
                                      stable(scores, count), err_msg=f"{scores} {count}")
        assert pruning.top_k_mask(scores, count).sum() == count


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
