import numpy as np
import pytest

import sys

import keras_egf.gradient_flow  # noqa: F401

gf = sys.modules["keras_egf.gradient_flow"]


def _random(seed=0, shapes=((5, 7), (7, 3), (3, 3, 2, 4))):
    rng = np.random.default_rng(seed)
    grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
    masks = [(rng.random(s) < 0.4).astype(np.float32) for s in shapes]
    return grads, masks


@pytest.mark.parametrize("p", [1, 2])
def test_gradient_flow_matches_numpy(p):
    grads, _ = _random()
    flat = np.concatenate([g.ravel() for g in grads]).astype(np.float64)
    expected = np.sum(np.abs(flat)) if p == 1 else np.sqrt(np.sum(flat**2))
    np.testing.assert_allclose(np.asarray(gf.gradient_flow(grads, p)), expected,
                               rtol=1e-6)


@pytest.mark.parametrize("p", [1, 2])
def test_effective_gradient_flow_matches_numpy(p):
    grads, masks = _random(seed=1)
    norms = [np.linalg.norm((g * m).astype(np.float64).ravel(), ord=p)
             for g, m in zip(grads, masks)]
    np.testing.assert_allclose(
        np.asarray(gf.effective_gradient_flow(grads, masks, p)), np.mean(norms),
        rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gf.layer_norms(gf.masked_gradients(grads, masks), p)),
                               norms, rtol=1e-6)


def test_dense_identity_egf1_is_gf1_over_layers():
    grads, masks = _random(seed=2)
    ones = [np.ones_like(m) for m in masks]
    egf1 = np.asarray(gf.effective_gradient_flow(grads, ones, p=1))
    gf1 = np.asarray(gf.gradient_flow(grads, p=1))
    np.testing.assert_allclose(egf1, gf1 / len(grads), rtol=1e-6)
    # None masks mean all ones too.
    np.testing.assert_allclose(
        np.asarray(gf.effective_gradient_flow(grads, [None] * len(grads), p=1)),
        egf1, rtol=1e-6)


def test_masked_measure_is_smaller_than_plain():
    grads, masks = _random(seed=3)
    assert np.asarray(gf.gradient_flow(grads, 1)) > len(grads) * \
        np.asarray(gf.effective_gradient_flow(grads, masks, 1))


@pytest.mark.parametrize("p", [3, 0, "2", True, 1.5])
def test_bad_p_is_named(p):
    grads, masks = _random()
    with pytest.raises(ValueError, match=f"p={p!r}"):
        gf.gradient_flow(grads, p)
    with pytest.raises(ValueError, match=f"p={p!r}"):
        gf.effective_gradient_flow(grads, masks, p)


def test_mismatched_lengths_and_empty():
    grads, masks = _random()
    with pytest.raises(ValueError, match="len"):
        gf.effective_gradient_flow(grads, masks[:1], 2)
    with pytest.raises(ValueError, match="empty"):
        gf.gradient_flow([], 2)


def test_member_axis_gives_each_members_own_measures():
    """members=True: every gradient (K, ...) holds K models' gradients; each
    measure is the vector of the measures each would have alone."""
    rng = np.random.default_rng(4)
    shapes = ((5, 7), (7, 3), (3, 2))
    grads = [rng.normal(size=(3,) + s).astype(np.float32) for s in shapes]
    masks = [(rng.random((3,) + s) < 0.5).astype(np.float32) for s in shapes]
    packed = gf.gradient_flow_measures(grads, gf.masked_gradients(grads, masks),
                                       per_layer=True, members=True)
    names = ["a", "b", "c"]
    for k in range(3):
        own = [g[k] for g in grads]
        alone = gf.gradient_flow_measures(
            own, gf.masked_gradients(own, [m[k] for m in masks]), per_layer=True)
        for name, value in alone.items():
            np.testing.assert_allclose(np.asarray(packed[name])[..., k],
                                       np.asarray(value), rtol=1e-6)
        mine, theirs = (gf.fixed_batch_point(packed, names, member=k),
                        gf.fixed_batch_point(alone, names))
        assert mine.keys() == theirs.keys()
        for m in gf.GRADIENT_FLOW_METRICS:
            assert mine[m] == pytest.approx(theirs[m], rel=1e-6)
        for name in names:
            assert mine["layers"][name] == pytest.approx(theirs["layers"][name], rel=1e-6)
    point = gf.fixed_batch_point(alone, names)
    assert list(point) == list(gf.GRADIENT_FLOW_METRICS) + ["layers"]
    assert set(point["layers"]) == set(names)
    assert all(isinstance(v, float) for v in point["layers"]["a"].values())


def test_mean_gradient_weights_each_batch_by_its_size():
    batches = [(np.ones((3, 1)), 1.0), (np.ones((1, 1)), 5.0)]
    mean = gf.mean_gradient(batches, lambda b: [np.full(2, b[1])],
                            lambda b: b[0].shape[0])
    np.testing.assert_allclose(mean[0], [(3 * 1.0 + 1 * 5.0) / 4] * 2)


def test_gradient_flow_mean_is_the_weighted_mean_of_unscaled_measures():
    # Three steps: (1, 2, 3, 4) unscaled; (20, 40, 60, 80) under scale 10
    # (so 2, 4, 6, 8); an overflowed step (inf, NaN) of weight 0.
    metric = gf.GradientFlowMean()
    assert {k: float(v) for k, v in metric.result().items()} == dict.fromkeys(
        gf.GRADIENT_FLOW_METRICS, 0.0)
    names = gf.GRADIENT_FLOW_METRICS
    metric.update_state(dict(zip(names, [1.0, 2.0, 3.0, 4.0])))
    metric.update_state(dict(zip(names, [20.0, 40.0, 60.0, 80.0])), scale=10.0,
                        sample_weight=1.0)
    metric.update_state(dict(zip(names, [np.inf, np.nan, np.inf, 1.0])),
                        scale=2.0, sample_weight=0.0)
    result = {k: float(v) for k, v in metric.result().items()}
    assert result == {"gf_1": 1.5, "gf_2": 3.0, "egf_1": 4.5, "egf_2": 6.0}
    np.testing.assert_array_equal(np.asarray(metric.sums), [3, 6, 9, 12, 2])
    metric.reset_state()
    assert float(metric.result()["gf_2"]) == 0.0
    assert gf.GradientFlowMean.from_config(metric.get_config()).name == metric.name
