"""Dynamic sparse training (SET, RigL): constant per-layer counts, RigL's
growth against a recomputed gradient, zeroed weights and optimizer state,
exact zeros between updates, determinism, TensorBoard scalars."""

import math

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import keras_egf as ke
from keras_egf import pruning
from keras_egf.experiment import mask_digests
from keras_egf.pruning import dynamic
from reference import effective_twin, twin_kernel_gradients

SETTINGS = {"plain": {}, "bn_l2": {"batch_norm": True, "weight_decay": 0.01},
            "skip_prelu": {"skip_connections": True, "activation": "prelu"}}


def _model(setting=None, seed=0, sparsity=0.8, **options):
    kwargs = dict(input_shape=(12,), hidden_widths=[16, 16], num_classes=3,
                  seed=seed, **{k: v for k, v in (setting or {}).items()
                                if k != "weight_decay"})
    model = ke.build_mlp(weight_decay=(setting or {}).get("weight_decay", 0.0),
                         **kwargs, **options)
    ke.prune(model, sparsity, seed=seed)
    return model, kwargs


def _data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 12)).astype("float32"), rng.integers(0, 3, n)


class Checker(keras.callbacks.Callback):
    """Placed after DynamicSparsity: masks before each step, and after it
    (and after any update) the invariants."""

    def __init__(self, layers):
        super().__init__()
        self.layers, self.events = layers, []

    def on_train_batch_begin(self, batch, logs=None):
        self.before = {l.name: l.mask.numpy() > 0 for l in self.layers}

    def on_train_batch_end(self, batch, logs=None):
        for layer in self.layers:
            mask, kernel = layer.mask.numpy() > 0, layer.kernel.numpy()
            assert np.all(kernel[~mask] == 0.0), layer.name  # exact zeros, always
            old = self.before[layer.name]
            if (mask != old).any():
                grown, dropped = mask & ~old, old & ~mask
                slots = pruning.gradual.optimizer_slots(self.model.optimizer, layer.kernel)
                assert len(slots) == 2  # Adam's moments
                self.events.append((layer.name, int(grown.sum()), int(dropped.sum())))
                assert np.all(kernel[grown] == 0.0)
                for slot in slots:
                    assert np.all(slot.numpy()[grown | dropped] == 0.0), slot.path


@pytest.mark.parametrize("method", ["set", "rigl"])
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_counts_constant_zeros_exact_and_state_cleared(method, name):
    model, _ = _model(SETTINGS[name], gradient_flow_every=3)
    counts = ke.active_weights(model)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    update = pruning.DynamicSparsity(method, update_every=4, drop_fraction=0.5)
    checker = Checker(pruning.masked_layers(model))
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
                        callbacks=[update, checker])
    total = 3 * 16
    end = int(0.75 * total)
    assert [s for s, _ in update.updates] == list(range(4, end, 4))
    for step, fraction in update.updates:
        assert fraction == pytest.approx(0.25 * (1 + math.cos(math.pi * step / end)))
    assert ke.active_weights(model) == counts  # every layer, after 8 updates
    assert len(checker.events) >= 8
    assert all(grown == dropped and grown > 0 for _, grown, dropped in checker.events)
    assert all(np.isfinite(v) for v in history.history["egf_2"])


def test_rigl_grows_the_top_gradient_pruned_positions():
    model, kwargs = _model({"batch_norm": True}, seed=2, sparsity=0.7)
    x, y = _data(32)
    layers = pruning.masked_layers(model)
    masks = {l.name: l.mask.numpy() > 0 for l in layers}
    kernels = {l.name: l.kernel.numpy() for l in layers}
    # The gradient at the update step, recomputed on a plain-Dense twin: with
    # lr 0 the weights of steps 0..3 stay, every step is the whole batch.
    twin = effective_twin(model, **kwargs)
    grads = dict(zip([l.name for l in layers], twin_kernel_gradients(twin, [(x, y)])))
    model.compile(keras.optimizers.SGD(0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    update = pruning.DynamicSparsity("rigl", update_every=4, drop_fraction=0.4,
                                     end_step=100)
    model.fit(x, y, batch_size=32, epochs=5, verbose=0, shuffle=False,
              callbacks=[update])
    assert update.updates[0][0] == 4
    fraction = update.updates[0][1]
    for layer in layers:
        name, old = layer.name, masks[layer.name]
        k = int(round(fraction * old.sum()))
        order = np.argsort(-np.where(old, np.abs(kernels[name]), -np.inf), axis=None,
                           kind="stable")
        remained = np.zeros(old.size, bool)
        remained[order[:old.sum() - k]] = True
        candidates = np.where(remained, -np.inf, np.abs(grads[name]).ravel())
        expected = remained.copy()
        expected[np.argsort(-candidates, kind="stable")[:k]] = True
        # only one update ran (step 4): the final mask is its result
        np.testing.assert_array_equal(layer.mask.numpy().ravel() > 0, expected, name)
        assert (expected & ~old.ravel()).sum() > 0  # some pruned positions grew


def test_stored_gradient_is_the_effective_kernel_gradient_at_pruned_positions():
    model, kwargs = _model({"weight_decay": 0.05}, seed=1)
    x, y = _data(16)
    model.compile(keras.optimizers.SGD(0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    twin = effective_twin(model, **kwargs)
    expected = twin_kernel_gradients(twin, [(x, y)], l2=0.05)
    model.enable_kernel_gradients()
    model.request_kernel_gradients()
    model.train_on_batch(x, y)
    stored = model.stored_kernel_gradients()
    for layer, g in zip(pruning.masked_layers(model), expected):
        np.testing.assert_allclose(stored[layer.name], g, rtol=1e-5, atol=1e-7)
        assert np.abs(stored[layer.name][layer.mask.numpy() == 0]).sum() > 0


def test_stored_gradient_is_unscaled_under_mixed_precision():
    x, y = _data(16)
    stored = {}
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            model, _ = _model(seed=1)
            model.compile(keras.optimizers.SGD(0.0),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            if policy == "mixed_float16":
                assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            model.enable_kernel_gradients()
            model.request_kernel_gradients()
            model.train_on_batch(x, y)
            stored[policy] = model.stored_kernel_gradients()
        finally:
            keras.mixed_precision.set_global_policy("float32")
    for name, g in stored["float32"].items():  # the loss scale (32768) divided out
        np.testing.assert_allclose(stored["mixed_float16"][name], g, rtol=2e-2, atol=2e-3)


def test_same_seed_same_masks_and_tensorboard_scalars(tmp_path):
    def run(seed, log_dir=None):
        model, _ = _model(seed=0)
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = _data()
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
                  callbacks=[pruning.DynamicSparsity("set", update_every=3, seed=seed,
                                                     log_dir=log_dir)])
        return mask_digests(model)

    a = run(3, str(tmp_path / "tb"))
    assert run(3) == a and run(4) != a
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["tensors"] + acc.Tags()["scalars"])
    assert {"dynamic_sparsity/hidden_0/regrown", "dynamic_sparsity/output/mask_change",
            "dynamic_sparsity/drop_fraction"} <= tags


def test_drop_and_grow_and_bad_arguments():
    mask = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    kernel = np.array([4.0, -1.0, 3.0, 0.5, 0, 0, 0, 0])
    grow = np.array([0, 0, 0, 0, 0.1, 0.9, 0.3, 0.2])
    new, grown, remained = dynamic.drop_and_grow(mask, kernel, grow, 0.5)
    np.testing.assert_array_equal(remained, [1, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(grown, [0, 0, 0, 0, 0, 1, 1, 0])
    assert new.sum() == mask.sum()
    with pytest.raises(ValueError, match="method='prune'"):
        pruning.DynamicSparsity("prune")
    with pytest.raises(ValueError, match="drop_fraction=1.5"):
        pruning.DynamicSparsity(drop_fraction=1.5)
    with pytest.raises(ValueError, match="update_every=0"):
        pruning.DynamicSparsity(update_every=0)


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_adagrad_accumulators_restart_at_their_initial_value(method):
    model, _ = _model(seed=3)
    optimizer = keras.optimizers.Adagrad(0.05, initial_accumulator_value=0.25)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(64)
    layers = pruning.masked_layers(model)
    before = {}

    class Before(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            before.update({l.name: l.mask.numpy() > 0 for l in layers})

    update = pruning.DynamicSparsity(method, update_every=3, drop_fraction=0.5,
                                     end_step=100)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
              callbacks=[Before(), update])  # 4 steps: one update, at step 3
    assert [s for s, _ in update.updates] == [3]
    for layer in layers:
        mask = layer.mask.numpy() > 0
        changed = mask != before[layer.name]
        assert changed.any()
        (accumulator,) = pruning.gradual.optimizer_slots(optimizer, layer.kernel)
        np.testing.assert_array_equal(accumulator.numpy()[changed], 0.25)
        kept = accumulator.numpy()[mask & ~changed]  # trained on (dead units stay)
        assert np.all(kept >= 0.25) and (kept > 0.25).any()


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_update_reports_the_regrown_count_and_the_mask_change(method):
    """update()'s (regrown, mask_change) per layer, the TensorBoard values,
    against the masks before and after."""
    model, _ = _model({"batch_norm": True}, seed=4, sparsity=0.7)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(32)
    update = pruning.DynamicSparsity(method, update_every=1000, drop_fraction=0.5,
                                     end_step=2000)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[update])
    layers = pruning.masked_layers(model)
    before = {l.name: l.mask.numpy() > 0 for l in layers}
    if method == "rigl":
        model.request_kernel_gradients()
    model.train_on_batch(x, y)
    changes = update.update(1000)
    for layer in layers:
        old, new = before[layer.name], layer.mask.numpy() > 0
        expected_k = int(round(update.updates[-1][1] * old.sum()))
        assert new.sum() == old.sum()
        grown, change = changes[layer.name]
        assert grown == expected_k > 0
        assert change == pytest.approx((new != old).mean())
        assert (new & ~old).sum() > 0
