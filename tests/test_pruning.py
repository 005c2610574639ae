"""The pruning package's own names (keras_egf/pruning/__init__.py): every
method through `prune` hits the sparsity exactly and is deterministic,
rounds only prune further, `prune`'s argument checks and its result, the
SC-SDC pair with any method, and layer collapse
(keras_egf.pruning.collapse). The scores themselves are checked against
independent recomputations in test_pruning_scores.py."""

import keras
import numpy as np
import pytest

import keras_egf as ke
from keras_egf import pruning
from keras_egf.pruning import collapse

BUILD = dict(input_shape=(12,), hidden_widths=[16, 16], num_classes=3)


def _model(seed=0, **kw):
    return ke.build_mlp(**{**BUILD, **kw}, seed=seed)


def _batches(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype("float32")
    y = rng.integers(0, 3, n)
    return [(x[: n // 2], y[: n // 2]), (x[n // 2:], y[n // 2:])]


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


def test_prune_arguments_are_checked():
    model = ke.build_mlp((12,), [16, 16], 3, seed=0)
    masks = ke.prune(model, 0.5, seed=0, exclude="hidden_0")  # one name
    assert masks["hidden_0"].all() and not masks["hidden_1"].all()
    with pytest.raises(ValueError, match="'hiden_0'.*masked layers"):
        ke.prune(model, 0.5, seed=0, exclude=["hiden_0"])
    with pytest.raises(ValueError, match="seed='x'"):
        ke.prune(model, 0.5, seed="x")
    with pytest.raises(ValueError, match="seed=-1"):
        ke.prune(model, 0.5, seed=-1)
    plain = ke.build_mlp((12,), [16], 3, masked=False)
    # A plain model is pruned as a masked copy (issue: one call prunes any
    # model); compute_masks still names the converter.
    assert ke.prune(plain, 0.5).copied
    with pytest.raises(ValueError, match="unmasked: convert it with "
                                         "keras_egf.prune_low_magnitude"):
        ke.compute_masks(plain, 0.5)


def test_prune_converts_a_plain_model_and_summarises():
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6, name="h"),
                              keras.layers.Dense(2, name="o")])
    result = ke.prune(plain, 0.5, seed=0)
    assert result.copied and isinstance(result.model, ke.MaskedModel)
    assert type(ke.prunable_layers(plain)[0]).__name__ == "Dense"  # unchanged
    assert result.sparsities == {"h": 0.5, "o": 0.5}
    assert [int(m.sum()) for m in result.values()] == [24, 6]  # still the masks
    text = repr(result)
    assert "sparsity 0.500 overall" in text and "a pruned copy" in text
    assert len(text) < 200  # a summary, not the arrays
    again = ke.prune(result.model, 0.75, seed=0)
    assert again.model is result.model and not again.copied
    with pytest.raises(ValueError, match="no layers with prunable weights"):
        ke.prune(keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.1)]), 0.5)
