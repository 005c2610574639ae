"""Sparsity distributions (keras_egf.pruning.distributions): ERK against a
NumPy transcription of RigL's `get_sparsities_erdos_renyi`
(google-research/rigl, rigl/sparse_utils.py), and the refusal of an
exclusion that leaves the other layers nothing (issue 22, point 4)."""

import re

import numpy as np
import pytest

import keras_egf as ke
from keras_egf.pruning import distributions as sd

# The MLP 784-300-100-10's kernels: the first holds 88.35 % of the weights.
SHAPES = {"hidden_0": (784, 300), "hidden_1": (300, 100), "output": (100, 10)}


def rigl_erdos_renyi(shapes, default_sparsity, dense_layers=(), erk_power_scale=1.0):
    """rigl/sparse_utils.py get_sparsities_erdos_renyi (include_kernel=True,
    no custom_sparsity_map), its `dense_layers` set seeded with the layers
    kept dense: its loop counts dense layers in the budget (`rhs -=
    n_zeros`), as keras-egf counts excluded ones."""
    def get_n_zeros(size, sparsity):
        return int(np.floor(sparsity * size))

    is_eps_valid = False
    dense_layers = set(dense_layers)
    while not is_eps_valid:
        divisor = 0
        rhs = 0
        raw_probabilities = {}
        for var_name, shape_list in shapes.items():
            n_param = np.prod(shape_list)
            n_zeros = get_n_zeros(n_param, default_sparsity)
            if var_name in dense_layers:
                rhs -= n_zeros
            else:
                n_ones = n_param - n_zeros
                rhs += n_ones
                raw_probabilities[var_name] = (np.sum(shape_list) /
                                               np.prod(shape_list))**erk_power_scale
                divisor += raw_probabilities[var_name] * n_param
        eps = rhs / divisor
        max_prob = np.max(list(raw_probabilities.values()))
        max_prob_one = max_prob * eps
        if max_prob_one > 1:
            is_eps_valid = False
            for mask_name, mask_raw_prob in raw_probabilities.items():
                if mask_raw_prob == max_prob:
                    dense_layers.add(mask_name)
        else:
            is_eps_valid = True
    sparsities = {}
    for var_name, shape_list in shapes.items():
        if var_name in dense_layers:
            sparsities[var_name] = 0.
        else:
            probability_one = eps * raw_probabilities[var_name]
            sparsities[var_name] = 1. - probability_one
    return sparsities


@pytest.mark.parametrize("sparsity, exclude", [(0.9, ()), (0.5, ()), (0.8, ("output",)),
                                               (0.1, ("hidden_0",)), (0.99, ())])
def test_erk_matches_rigl_where_the_budget_allows(sparsity, exclude):
    ours = sd.erk(SHAPES, sparsity, exclude=exclude)
    reference = rigl_erdos_renyi(SHAPES, sparsity, dense_layers=exclude)
    # RigL floors each layer's zeros (its budget differs by < 1 weight a layer)
    for name in SHAPES:
        assert ours[name] == pytest.approx(reference[name], abs=1e-4), name
    sizes = {n: np.prod(s) for n, s in SHAPES.items()}
    kept = sum((1 - ours[n]) * sizes[n] for n in SHAPES)
    assert kept == pytest.approx((1 - sparsity) * sum(sizes.values()))  # overall target
    assert all(ours[n] == 0.0 for n in exclude)


def test_an_exclusion_beyond_the_budget_is_refused_naming_it():
    """hidden_0 kept dense holds 88.35 % of the weights: at sparsity 0.8 the
    others would need a negative density. RigL's loop then returns
    sparsities above 1; keras-egf refuses, naming the layer, its share and
    the largest sparsity still possible (computed here by hand)."""
    reference = rigl_erdos_renyi(SHAPES, 0.8, dense_layers=("hidden_0",))
    assert reference["hidden_1"] > 1 and reference["output"] > 1
    total = 784 * 300 + 300 * 100 + 100 * 10
    share = 784 * 300 / total
    assert round(share * 100, 2) == 88.35
    with pytest.raises(ValueError) as raised:
        sd.erk(SHAPES, 0.8, exclude=["hidden_0"])
    message = str(raised.value)
    assert "['hidden_0'] excluded" in message
    assert "88.35% of the weights (235,200 of 266,200)" in message
    assert f"below {1 - share:.6g}" in message and "0.116454" in message
    assert "largest possible to 4 decimals: 0.1164" in message
    assert "Received: sparsity=0.8, exclude=['hidden_0']" in message
    largest = float(re.search(r"4 decimals: ([0-9.]+)", message).group(1))
    # the largest printed works, the next 1e-4 does not
    result = sd.erk(SHAPES, largest, exclude=["hidden_0"])
    assert all(0.0 <= v < 1.0 for v in result.values())
    assert result["hidden_1"] > 0.99
    with pytest.raises(ValueError, match="cannot reach sparsity=0.1165"):
        sd.erk(SHAPES, 0.1165, exclude=["hidden_0"])


def test_an_impossible_exclusion_fails_before_any_mask_is_made():
    model = ke.build_mlp((784,), [300, 100], 10, seed=0)
    masks_before = {l.name: l.mask.numpy().copy() for l in ke.prunable_layers(model)}
    with pytest.raises(ValueError, match=r"\['hidden_0'\] excluded.*88\.35%"):
        ke.prune(model, 0.8, distribution="erk", exclude="hidden_0", seed=0)
    for layer in ke.prunable_layers(model):
        np.testing.assert_array_equal(layer.mask.numpy(), masks_before[layer.name])


def test_every_layer_excluded():
    assert sd.erk(SHAPES, 0.0, exclude=list(SHAPES)) == {n: 0.0 for n in SHAPES}
    with pytest.raises(ValueError, match="every layer is excluded.*only sparsity=0"):
        sd.erk(SHAPES, 0.3, exclude=list(SHAPES))
    assert sd.uniform(SHAPES, 0.8, exclude=["hidden_0"]) == {
        "hidden_0": 0.0, "hidden_1": 0.8, "output": 0.8}  # no budget to exceed


def test_a_distribution_registered_later_is_used_by_prune():
    """Issue 23: distributions are a registry, looked up when used."""
    assert list(sd.DISTRIBUTIONS) == ["erk", "uniform"]
    with pytest.raises(ValueError, match=r"^Unknown sparsity distribution "
                       r"'last_dense'\. Supported: \['erk', 'uniform'\]\. "
                       r"Register one with keras_egf\.pruning\.register_distribution\.$"):
        sd.get_distribution("last_dense")

    def last_dense(shapes, sparsity, exclude=()):
        names = list(shapes)
        return {n: 0.0 if n == names[-1] else sparsity for n in names}

    ke.pruning.register_distribution("last_dense", last_dense)
    try:
        assert "last_dense" in ke.all_distribution_names()
        model = ke.build_mlp((6,), [8], 3)
        masks = ke.prune(model, 0.5, distribution="last_dense", seed=0)
        assert masks.sparsities == {"hidden_0": 0.5, "output": 0.0}
        with pytest.raises(ValueError, match="already registered"):
            ke.pruning.register_distribution("last_dense", last_dense)
    finally:
        sd.DISTRIBUTIONS.unregister("last_dense")


def test_uniform_distribution_is_pure():
    shapes = {"a": (10, 10), "b": (10, 2)}
    assert sd.uniform(shapes, 0.7) == {"a": 0.7, "b": 0.7}
    assert sd.uniform(shapes, 0.7, exclude=["b"]) == {"a": 0.7, "b": 0.0}


def test_erk_reaches_overall_sparsity_and_favours_small_layers():
    shapes = {"in": (784, 300), "mid": (300, 100), "out": (100, 10)}
    total = sum(np.prod(s) for s in shapes.values())
    for sparsity in (0.5, 0.9, 0.98):
        per = sd.erk(shapes, sparsity)
        kept = sum((1 - per[n]) * np.prod(s) for n, s in shapes.items())
        np.testing.assert_allclose(kept, (1 - sparsity) * total, rtol=1e-9)
        assert per["in"] > per["mid"] > per["out"] or per["out"] == 0.0
        # Hand check of the ERK density ratio between two non-dense layers.
        if per["mid"] > 0 and per["in"] > 0:
            ratio = (1 - per["in"]) / (1 - per["mid"])
            expected = (sum(shapes["in"]) / np.prod(shapes["in"])) / (
                sum(shapes["mid"]) / np.prod(shapes["mid"]))
            np.testing.assert_allclose(ratio, expected, rtol=1e-9)
    # At 50% the small output layer would need density > 1: it is kept dense.
    assert sd.erk(shapes, 0.5)["out"] == 0.0


def test_erk_on_4d_conv_kernels_counts_the_spatial_dimensions():
    # Two convolutions: density ratio (sum/prod of the whole 4-D shape),
    # 30/1152 : 38/2304 = 1.5789; without the 3x3 it would be 1.5.
    s = sd.erk({"c1": (3, 3, 8, 16), "c2": (3, 3, 16, 16)}, 0.8)
    d1, d2 = 1 - s["c1"], 1 - s["c2"]
    assert d1 / d2 == pytest.approx((30 / 1152) / (38 / 2304), rel=1e-9)
    assert d1 * 1152 + d2 * 2304 == pytest.approx(0.2 * (1152 + 2304))
    # A conv and a small dense layer that ERK would make denser than 1: it is
    # kept dense, the conv makes up for it (by hand: 1 - 2144/4608).
    s = sd.erk({"conv": (3, 3, 16, 32), "head": (32, 10)}, 0.5)
    assert s["head"] == 0.0
    assert s["conv"] == pytest.approx(1 - 2144 / 4608, rel=1e-9)
