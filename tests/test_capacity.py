import numpy as np
import pytest

import keras_egf as ke

GRID_WIDTHS = [308, 923, 1538, 2153, 2768]


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("multiplier", [2, 4])
def test_plan_equal_capacity_over_the_paper_grid(depth, multiplier):
    for width in GRID_WIDTHS:
        plan = ke.same_capacity_plan(784, [width] * depth, 10, multiplier)
        wide = multiplier * width
        assert [p.sparse_shape for p in plan] == (
            [(784, wide)] + [(wide, wide)] * (depth - 1) + [(wide, 10)])
        assert [p.active for p in plan] == (
            [784 * width] + [width * width] * (depth - 1) + [width * 10])
        for p in plan:
            assert p.active == np.prod(p.dense_shape) <= np.prod(p.sparse_shape)


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("multiplier", [2, 4])
def test_built_pair_has_exactly_equal_active_weights(depth, multiplier):
    pair = ke.same_capacity_pair((784,), [24] * depth, 10, multiplier, seed=0)
    dense, sparse = ke.active_weights(pair.dense), ke.active_weights(pair.sparse)
    assert list(dense) == list(sparse)
    assert dense == sparse
    assert dense == {p.name: p.active for p in pair.plan}
    widths = [l.units for l in ke.prunable_layers(pair.sparse)][:-1]
    assert widths == [24 * multiplier] * depth


@pytest.mark.parametrize("activation, scheme", [("relu", "he"), ("sigmoid", "glorot")])
def test_sparse_active_init_std_matches_dense_twin(activation, scheme):
    pair = ke.same_capacity_pair((784,), [308, 308], 10, 2, activation=activation,
                                 seed=1)
    for d, s, p in zip(ke.prunable_layers(pair.dense),
                       ke.prunable_layers(pair.sparse), pair.plan):
        dense_std = d.kernel.numpy().std()
        active = s.kernel.numpy()[s.mask.numpy() == 1]
        assert active.size == p.active
        assert abs(active.std() / dense_std - 1) < 0.05, p.name
        fan_in, fan_out = p.dense_shape
        target = np.sqrt(2 / fan_in) if scheme == "he" else np.sqrt(2 / (fan_in + fan_out))
        assert abs(dense_std / target - 1) < 0.05
        # The sparse layer's own fan-in would give a smaller std: not used.
        own = np.sqrt(2 / s.kernel.shape[0])
        if s.kernel.shape[0] != fan_in and scheme == "he":
            assert abs(active.std() - own) > abs(active.std() - target)


def test_pair_trains_and_pairs_are_seeded():
    a = ke.same_capacity_pair((20,), [8], 3, 2, seed=3, batch_norm=True,
                              skip_connections=True, weight_decay=1e-4)
    b = ke.same_capacity_pair((20,), [8], 3, 2, seed=3, batch_norm=True,
                              skip_connections=True, weight_decay=1e-4)
    for la, lb in zip(ke.prunable_layers(a.sparse), ke.prunable_layers(b.sparse)):
        np.testing.assert_array_equal(la.mask.numpy(), lb.mask.numpy())
        np.testing.assert_array_equal(la.kernel.numpy(), lb.kernel.numpy())


def test_dense_equivalent_of_a_pair_is_exact():
    pair = ke.same_capacity_pair((784,), [40, 40], 10, 3, seed=0)
    twin = ke.dense_equivalent(pair.sparse)
    assert twin.exact
    assert ke.active_weights(twin.model) == ke.active_weights(pair.dense)
    assert [l.units for l in ke.prunable_layers(twin.model)] == [40, 40, 10]


def test_dense_equivalent_reports_mismatch():
    model = ke.build_mlp((30,), [20, 20], 4, seed=0)
    ke.prune(model, 0.9, distribution="erk", seed=0)
    with pytest.warns(UserWarning, match="active sparse weights but its dense "
                      "twin has") as record:
        twin = ke.dense_equivalent(model)
    assert not twin.exact
    assert [str(w.message) for w in record if "dense twin" in str(w.message)] == [
        f"dense_equivalent: layer {r.name!r} has {r.sparse_active} active sparse "
        f"weights but its dense twin has {r.dense_weights}."
        for r in twin.report if not r.exact]
    counts = ke.active_weights(model)
    for row in twin.report:
        assert row.sparse_active == counts[row.name]
        assert row.exact == (row.sparse_active == row.dense_weights)
    assert twin.report[-1].dense_weights == twin.model.layers[-1].kernel.shape[0] * 4


def test_dense_equivalent_follows_branches_and_names_a_bad_merge():
    pair = ke.same_capacity_pair((30,), [20, 20, 20], 4, 2, seed=0,
                                 skip_connections=True)
    twin = ke.dense_equivalent(pair.sparse)
    assert twin.exact
    assert ke.active_weights(twin.model) == ke.active_weights(pair.dense)
    assert {"skip_1", "skip_2"} <= {l.name for l in twin.model.layers}
    # ERK gives the hidden layers different densities: their dense widths
    # no longer meet at the skip connection.
    model = ke.build_mlp((30,), [20, 20], 4, skip_connections=True)
    ke.prune(model, 0.9, distribution="erk", seed=0)
    with pytest.raises(ValueError, match="unequal at layer 'skip_1'"):
        ke.dense_equivalent(model)


@pytest.mark.parametrize("bad", [0.5, 0, float("inf")])
def test_bad_multiplier_named(bad):
    with pytest.raises(ValueError, match="sparse_width_multiplier"):
        ke.same_capacity_pair((10,), [4], 2, bad)
