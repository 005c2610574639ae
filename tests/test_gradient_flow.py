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
    np.testing.assert_allclose(gf.gradient_flow(grads, p).numpy(), expected,
                               rtol=1e-6)


@pytest.mark.parametrize("p", [1, 2])
def test_effective_gradient_flow_matches_numpy(p):
    grads, masks = _random(seed=1)
    norms = [np.linalg.norm((g * m).astype(np.float64).ravel(), ord=p)
             for g, m in zip(grads, masks)]
    np.testing.assert_allclose(
        gf.effective_gradient_flow(grads, masks, p).numpy(), np.mean(norms),
        rtol=1e-6)
    np.testing.assert_allclose(gf.layer_norms(gf.masked_gradients(grads, masks), p).numpy(),
                               norms, rtol=1e-6)


def test_dense_identity_egf1_is_gf1_over_layers():
    grads, masks = _random(seed=2)
    ones = [np.ones_like(m) for m in masks]
    egf1 = gf.effective_gradient_flow(grads, ones, p=1).numpy()
    gf1 = gf.gradient_flow(grads, p=1).numpy()
    np.testing.assert_allclose(egf1, gf1 / len(grads), rtol=1e-6)
    # None masks mean all ones too.
    np.testing.assert_allclose(
        gf.effective_gradient_flow(grads, [None] * len(grads), p=1).numpy(),
        egf1, rtol=1e-6)


def test_masked_measure_is_smaller_than_plain():
    grads, masks = _random(seed=3)
    assert gf.gradient_flow(grads, 1).numpy() > len(grads) * \
        gf.effective_gradient_flow(grads, masks, 1).numpy()


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
