"""Dynamic sparse training (keras_egf.pruning.dynamic: SET, RigL): constant
per-layer counts, RigL's growth against a recomputed gradient, zeroed
weights and optimizer state, exact zeros between updates, determinism,
TensorBoard scalars, and the updates against RigL's, JaxPruner's and SET's
code. The gradient RigL grows by is checked in test_gradient_recorder.py."""

import math

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import keras_egf as ke
from keras_egf import config as config_lib
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
        self.model  # noqa: B018 (on JAX, reading it syncs the training state)
        self.before = {l.name: l.mask.numpy() > 0 for l in self.layers}

    def on_train_batch_end(self, batch, logs=None):
        self.model  # noqa: B018
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
            self.model  # noqa: B018 (on JAX, reading it syncs the state)
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
        update.recorder.request()
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


# --- Checks against the reference implementations (issue 22) -------------
# Each reference below is written from the published code, line by line, in
# NumPy; it shares nothing with keras_egf.pruning.dynamic. Sources:
# google-research/rigl rigl/rigl_tf2/mask_updaters.py (MaskUpdater.
# generic_mask_update, reset_momentum), google-research/jaxpruner
# jaxpruner/algorithms/sparse_trainers.py (SET._update_masks, RigL,
# restart_inner_state), jaxpruner/base_updater.py (wrap_optax's update_fn),
# jaxpruner/mask_calculator.py (_topk_mask_calculator_internal),
# dcmocanu/sparse-evolutionary-artificial-neural-networks
# SET-MLP-Sparse-Python-Data-Structures/set_mlp_sparse_data_structures.py
# (find_first_pos, find_last_pos, weightsEvolution_Amar).


def _tf_top_k_indices(values):
    """tf.math.top_k(values, k=size).indices: descending, ties by the lower
    index first."""
    return np.argsort(-np.asarray(values), kind="stable")


def rigl_tf2_generic_mask_update(mask, var, slots, score_drop, score_grow,
                                 drop_fraction, reinit_when_same=False):
    """rigl_tf2 MaskUpdater.generic_mask_update + reset_momentum, in NumPy.
    Returns (new mask, new var, new slots)."""
    n_total = score_drop.size
    n_ones = int(np.sum(mask))
    n_prune = int(np.float32(n_ones) * np.float32(drop_fraction))  # tf.cast: truncates
    n_keep = n_ones - n_prune
    sorted_indices = _tf_top_k_indices(score_drop.reshape(-1))
    new_values = np.where(np.arange(n_total) < n_keep, 1.0, 0.0)
    mask1 = np.zeros(n_total)
    mask1[sorted_indices] = new_values  # tf.scatter_nd
    score_grow = score_grow.reshape(-1)
    score_grow_lifted = np.where(mask1 == 1, np.ones_like(mask1) * (score_grow.min() - 1),
                                 score_grow)
    sorted_indices = _tf_top_k_indices(score_grow_lifted)
    new_values = np.where(np.arange(n_total) < n_prune, 1.0, 0.0)
    mask2 = np.zeros(n_total)
    mask2[sorted_indices] = new_values
    assert np.sum(mask1 * mask2) == 0  # tf.debugging.assert_near
    mask2_reshaped = mask2.reshape(mask.shape)
    grow_tensor = np.zeros_like(var)
    if reinit_when_same:
        new_connections = mask2_reshaped == 1
    else:
        new_connections = (mask2_reshaped == 1) & (mask == 0)
    new_weights = np.where(new_connections, grow_tensor, var)
    new_slots = [np.where(new_connections, np.zeros_like(s), s) for s in slots]
    return (mask1 + mask2).reshape(mask.shape), new_weights, new_slots


def _spy_growth(monkeypatch):
    """Records, per layer and in order, the (remained, grown) flat indices
    the update chose: SET's draw is replayed into the reference as its random
    grow scores (the reference then makes the same draw)."""
    calls = []
    real_random, real_top = dynamic.grow_random, dynamic.grow_top

    def grow_random(rng, size, remained, k):
        grown = real_random(rng, size, remained, k)
        calls.append((np.array(remained), np.array(grown)))
        return grown

    def grow_top(scores, remained, k):
        grown = real_top(scores, remained, k)
        calls.append((np.array(remained), np.array(grown)))
        return grown

    monkeypatch.setattr(dynamic, "grow_random", grow_random)
    monkeypatch.setattr(dynamic, "grow_top", grow_top)
    return calls


def _trained(method, seed=0, drop_rule="magnitude", reinit_when_same=False,
             batch_norm=False):
    """A model after 8 Adam steps, with a callback ready for update(1000)
    at fraction 0.25 (drop_fraction 0.5, end_step 2000: cos(pi/2) = 0)."""
    model, _ = _model({"batch_norm": batch_norm}, seed=seed, sparsity=0.5)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(64, seed=seed)
    update = pruning.DynamicSparsity(method, update_every=1000, drop_fraction=0.5,
                                     end_step=2000, seed=seed, drop_rule=drop_rule,
                                     reinit_when_same=reinit_when_same)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[update])
    if method == "rigl":
        update.recorder.request()
    model.train_on_batch(x[:32], y[:32])
    return model, update


def _state(model, layer):
    slots = pruning.gradual.optimizer_slots(model.optimizer, layer.kernel)
    return (layer.mask.numpy(), layer.kernel.numpy().astype(np.float64),
            [s.numpy().astype(np.float64) for s in slots])


@pytest.mark.parametrize("reinit_when_same", [False, True])
@pytest.mark.parametrize("method", ["rigl", "set"])
def test_update_matches_rigl_tf2_generic_mask_update(method, reinit_when_same, monkeypatch):
    """Same weights, slots, drop scores (|mask * w|) and grow scores (RigL:
    the stored |g|; SET: our random draw as scores): the same masks, and a
    connection dropped and regrown keeps its weight and Adam moments unless
    reinit_when_same. keras-egf also zeroes dropped weights and their state
    (RigL leaves them under the mask): compared on the new mask, and
    checked to be 0 off it."""
    model, update = _trained(method, seed=5, reinit_when_same=reinit_when_same)
    layers = pruning.masked_layers(model)
    before = {l.name: _state(model, l) for l in layers}
    grads = update.recorder.gradients() if method == "rigl" else None
    calls = _spy_growth(monkeypatch)
    update.update(1000)
    fraction = update.updates[-1][1]
    assert fraction == pytest.approx(0.25)
    regrown_total = 0
    for layer, (remained, grown) in zip(layers, calls):
        mask, kernel, slots = before[layer.name]
        n_ones = int(mask.sum())
        # the rounding conventions agree here (RigL truncates, keras-egf rounds)
        assert int(np.float32(n_ones) * np.float32(fraction)) == round(fraction * n_ones)
        if method == "rigl":
            score_grow = np.abs(grads[layer.name]).astype(np.float64)
        else:  # the draw as scores: the grown positions first
            score_grow = np.zeros(mask.size)
            score_grow[grown] = 1.0
        ref_mask, ref_var, ref_slots = rigl_tf2_generic_mask_update(
            mask, kernel, slots, np.abs(mask * kernel), score_grow, fraction,
            reinit_when_same=reinit_when_same)
        new_mask, new_kernel, new_slots = _state(model, layer)
        np.testing.assert_array_equal(new_mask, ref_mask, layer.name)
        on = ref_mask > 0
        np.testing.assert_array_equal(new_kernel[on], ref_var[on])
        assert np.all(new_kernel[~on] == 0)
        for ours, ref in zip(new_slots, ref_slots):
            np.testing.assert_array_equal(ours[on], ref[on])
            assert np.all(ours[~on] == 0)
        dropped = np.setdiff1d(np.flatnonzero(mask.ravel()), remained)
        regrown = np.intersect1d(dropped, grown)
        regrown_total += regrown.size
        if regrown.size:
            kept = new_kernel.ravel()[regrown]
            if reinit_when_same:
                assert np.all(kept == 0)
                assert all(np.all(s.ravel()[regrown] == 0) for s in new_slots)
            else:  # the weight and both Adam moments as they were
                np.testing.assert_array_equal(kept, kernel.ravel()[regrown])
                assert np.all(kept != 0)
                for ours, old in zip(new_slots, slots):
                    np.testing.assert_array_equal(ours.ravel()[regrown], old.ravel()[regrown])
    assert regrown_total > 0  # the case under test happened


def set_authors_kept(values, zeta):
    """weightsEvolution_Amar's drop on one layer's active weights (`values`,
    the CSR data): True where a weight is kept."""
    def find_first_pos(array, value):
        idx = (np.abs(array - value)).argmin()
        return idx

    def find_last_pos(array, value):
        idx = (np.abs(array - value))[::-1].argmin()
        return array.shape[0] - idx

    values_sorted = np.sort(values)
    first_zero_pos = find_first_pos(values_sorted, 0)
    last_zero_pos = find_last_pos(values_sorted, 0)
    largest_negative = values_sorted[int((1 - zeta) * first_zero_pos)]
    smallest_positive = values_sorted[int(min(values_sorted.shape[0] - 1, last_zero_pos + zeta * (
        values_sorted.shape[0] - last_zero_pos)))]
    return (values > smallest_positive) | (values < largest_negative)


def test_set_sign_rule_against_the_set_authors_code(monkeypatch):
    """drop_rule="sign": per sign, the dropped weights are the ones nearest
    zero, round(zeta * n) of them, plus every exact 0. The authors' index
    arithmetic (find_first_pos / find_last_pos) drops the same weights and
    0 to 2 more per sign (the next ones towards larger |w|)."""
    model, update = _trained("set", seed=2, drop_rule="sign")
    layers = pruning.masked_layers(model)
    zeros_at = {}
    for layer in layers[:2]:  # three active weights exactly 0 in two layers
        kernel = layer.kernel.numpy()
        zeros_at[layer.name] = np.flatnonzero(layer.mask.numpy().ravel())[[0, 5, 9]]
        kernel.ravel()[zeros_at[layer.name]] = 0.0
        layer.kernel.assign(kernel)
    before = {l.name: (l.mask.numpy().ravel() > 0, l.kernel.numpy().ravel()) for l in layers}
    calls = _spy_growth(monkeypatch)
    update.update(1000)
    assert update.updates[-1][1] == 0.5  # the constant zeta, no cosine decay
    extra = 0
    for layer, (remained, grown) in zip(layers, calls):
        mask, kernel = before[layer.name]
        active = np.flatnonzero(mask)
        values = kernel[active]
        ours_kept = np.isin(active, remained)
        authors_kept = set_authors_kept(values, 0.5)
        assert not np.any(ours_kept[values == 0]) and not np.any(authors_kept[values == 0])
        for side in (values < 0, values > 0):
            n = int(side.sum())
            ours_dropped = side & ~ours_kept
            assert ours_dropped.sum() == round(0.5 * n)
            assert not np.any(authors_kept[ours_dropped])  # nested: ours drop a subset
            more = int((side & ~authors_kept).sum() - ours_dropped.sum())
            assert 0 <= more <= 2
            extra += more
            # the dropped ones are those nearest zero on this side
            assert np.abs(values[ours_dropped]).max() < np.abs(values[side & ours_kept]).min()
        assert len(grown) == active.size - ours_kept.sum()  # as many grown
        assert layer.mask.numpy().sum() == mask.sum()
    assert extra > 0


def test_set_sign_rule_keeps_zeta_constant_over_a_run():
    model, _ = _model(seed=0)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    counts = ke.active_weights(model)
    update = pruning.DynamicSparsity("set", update_every=4, drop_fraction=0.3,
                                     drop_rule="sign")
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[update])
    assert [s for s, _ in update.updates] == [4, 8, 12, 16]  # 24 steps, end 18
    assert {f for _, f in update.updates} == {0.3}
    assert ke.active_weights(model) == counts


def jaxpruner_topk_mask(scores, sparsity):
    """mask_calculator.topk_mask_calculator (and _internal), in NumPy."""
    if sparsity == 0:
        return np.ones_like(scores)
    flat_scores = scores.reshape(-1)
    num_ones = int(np.round(flat_scores.size * (1 - sparsity)))
    num_ones = max(1, num_ones)
    topk_index = np.argsort(-flat_scores, kind="stable")[num_ones - 1]
    topk_threshold = flat_scores[topk_index]
    mask_by_value = scores >= topk_threshold
    mask_by_index = (np.arange(flat_scores.size) <= topk_index) | (flat_scores != topk_threshold)
    return (mask_by_value * mask_by_index.reshape(scores.shape)).astype(np.float64)


def jaxpruner_rigl_update(old_mask, params, grads, drop_fraction, eps=1e-5):
    """sparse_trainers.SET._update_masks with RigL's scores (|params|,
    |grads|): the new mask."""
    drop_score, grow_score = np.abs(params), np.abs(grads)
    density = np.sum(old_mask) / old_mask.size
    sparsity = 1 - density
    intermediate_density = density * (1 - drop_fraction)
    intermediate_sparsity = 1 - intermediate_density
    lowest_score = np.min(drop_score) - eps
    new_drop_score = np.where(old_mask == 0, lowest_score, drop_score)
    dropped_mask = jaxpruner_topk_mask(new_drop_score, intermediate_sparsity)
    highest_score = np.max(grow_score) + eps
    new_grow_scores = np.where(dropped_mask == 1, highest_score, grow_score)
    return jaxpruner_topk_mask(new_grow_scores, sparsity)


def test_instead_of_step_timing_matches_jaxpruner():
    """timing="instead_of_step" against JaxPruner's RigL (wrap_optax with
    skip_gradients): at the update step no weight moves, the mask is
    updated from the weights before the step and that step's gradient, Adam
    moments restart where connections are activated, params are masked
    (post_gradient_update). BatchNorm statistics still move; the iteration
    count still advances (JaxPruner's inner count does not)."""
    model, _ = _model({"batch_norm": True}, seed=3, sparsity=0.5)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    layers = pruning.masked_layers(model)
    x, y = _data(96, seed=3)

    class Capture(keras.callbacks.Callback):
        """The state at the begin (placed before DynamicSparsity) or the end
        (placed after it) of the update step, step 4."""

        def __init__(self, hook):
            super().__init__()
            self.state = {}
            setattr(self, hook, self._capture)

        def _capture(self, batch, logs=None):
            if batch != 4:
                return
            opt = self.model.optimizer
            self.state.update(
                weights=[w.numpy() for w in self.model.trainable_variables],
                slots={l.name: [s.numpy() for s in pruning.gradual.optimizer_slots(
                    opt, l.kernel)] for l in layers},
                masks={l.name: l.mask.numpy() for l in layers},
                moving=[w.numpy() for w in self.model.non_trainable_weights
                        if "moving_mean" in w.path])

    begin, end = Capture("on_train_batch_begin"), Capture("on_train_batch_end")
    update = pruning.DynamicSparsity("rigl", update_every=4, drop_fraction=0.5, end_step=8,
                                     timing="instead_of_step")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
              callbacks=[begin, update, end])
    assert [s for s, _ in update.updates] == [4]
    fraction = update.updates[0][1]
    grads = update.recorder.gradients()  # of step 4, the last recording step
    kernels = {id(l.kernel): l for l in layers}
    activated_total = 0
    for w, before, after in zip(model.trainable_variables, begin.state["weights"],
                                end.state["weights"]):
        layer = kernels.get(id(w))
        if layer is None:  # biases, BatchNorm's gamma and beta: as before the step
            np.testing.assert_array_equal(after, before, w.path)
            continue
        old = begin.state["masks"][layer.name]
        expected = jaxpruner_rigl_update(old, before.astype(np.float64),
                                         grads[layer.name].astype(np.float64), fraction)
        np.testing.assert_array_equal(end.state["masks"][layer.name], expected, layer.name)
        np.testing.assert_array_equal(after, before * expected)  # post_gradient_update
        activated = (old == 0) & (expected == 1)
        activated_total += int(activated.sum())
        for ours, moment in zip(end.state["slots"][layer.name], begin.state["slots"][layer.name]):
            reference = moment * (1 - activated)  # restart_inner_state
            np.testing.assert_array_equal(ours[expected > 0], reference[expected > 0])
            assert np.all(ours[expected == 0] == 0)
    assert activated_total > 0
    assert all((a != b).any() for a, b in zip(begin.state["moving"], end.state["moving"]))
    assert int(model.optimizer.iterations.numpy()) == 6  # 6 batches, the update step counted


def test_after_step_timing_drops_on_the_weights_after_the_step(monkeypatch):
    """The default: the drop ranks |w| after the update step's optimizer
    step (as RigL TF2's train loop: apply_gradients, then update), not the
    weights the step's gradient was taken at."""
    model, _ = _model(seed=3, sparsity=0.5)
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    layers = pruning.masked_layers(model)
    x, y = _data(64, seed=3)
    seen = {}

    class Capture(keras.callbacks.Callback):  # runs before DynamicSparsity's hooks
        def on_train_batch_begin(self, batch, logs=None):
            self.model  # noqa: B018 (on JAX, reading it syncs the state)
            if batch == 2:
                seen["before"] = {l.name: (l.kernel.numpy(), l.mask.numpy() > 0) for l in layers}

        def on_train_batch_end(self, batch, logs=None):
            self.model  # noqa: B018
            if batch == 2:
                seen["after"] = {l.name: l.kernel.numpy() for l in layers}

    calls = _spy_growth(monkeypatch)
    update = pruning.DynamicSparsity("set", update_every=2, drop_fraction=0.5, end_step=3)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
              callbacks=[Capture(), update])
    assert [s for s, _ in update.updates] == [2]
    fraction, differs = update.updates[0][1], 0
    for layer, (remained, _) in zip(layers, calls):
        pre, mask = seen["before"][layer.name]
        active = np.flatnonzero(mask)
        keep = active.size - round(fraction * active.size)

        def kept_by(kernel):  # the `keep` largest |w| among the active ones
            order = np.argsort(-np.abs(kernel.ravel()[active]), kind="stable")
            return np.sort(active[order[:keep]])

        np.testing.assert_array_equal(np.sort(remained), kept_by(seen["after"][layer.name]))
        differs += int(np.setdiff1d(kept_by(pre), remained).size)
    assert differs > 0  # the pre-step weights would have dropped others


def test_drop_rule_timing_and_reinit_options_are_validated():
    with pytest.raises(ValueError, match="drop_rule='smallest'"):
        pruning.DynamicSparsity("set", drop_rule="smallest")
    with pytest.raises(ValueError, match="drop_rule='sign', method='rigl'"):
        pruning.DynamicSparsity("rigl", drop_rule="sign")
    with pytest.raises(ValueError, match="timing='before_step'"):
        pruning.DynamicSparsity(timing="before_step")
    with pytest.raises(ValueError, match="reinit_when_same=1"):
        pruning.DynamicSparsity(reinit_when_same=1)
    default = pruning.DynamicSparsity("set")
    assert (default.drop_rule, default.timing, default.reinit_when_same) == (
        "magnitude", "after_step", False)


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_each_fit_starts_afresh(method):
    """Two identical models: the callback used in both fits has, after the
    second, the state (updates, schedule, masks made) of a fresh one used in
    the second only."""
    x, y = _data(64)
    runs = {}
    for name in ("used", "fresh"):
        model, _ = _model(seed=5)
        model.compile(keras.optimizers.Adam(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        first = pruning.DynamicSparsity(method, update_every=2, drop_fraction=0.4)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
                  callbacks=[first])  # steps 0..7, updates at 2, 4
        second = first if name == "used" else pruning.DynamicSparsity(
            method, update_every=2, drop_fraction=0.4)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
                  callbacks=[second])  # steps 8..15, end 8 + 6: updates at 8, 10, 12
        runs[name] = (second, mask_digests(model))
    (used, used_masks), (fresh, fresh_masks) = runs["used"], runs["fresh"]
    assert [s for s, _ in used.updates] == [8, 10, 12]
    assert used.updates == fresh.updates
    assert used.schedule == fresh.schedule == dynamic.CosineDropFraction(0.4, 14)
    assert used_masks == fresh_masks


def test_rigl_model_saves_and_loads_without_the_recorded_gradients(tmp_path):
    """The recorder's buffers are not model weights: a model that ran RigL
    saves the same variables as before it did, and loads with the same
    predictions."""
    model, _ = _model(seed=6)
    model.compile(keras.optimizers.Adam(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    paths = [v.path for v in model.weights]
    x, y = _data(64)
    update = pruning.DynamicSparsity("rigl", update_every=2, end_step=8)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[update])
    assert update.updates and update.recorder.gradients()  # it recorded
    assert [v.path for v in model.weights] == paths
    recorded = {id(v) for v in update.recorder._buffers.values()}
    assert not recorded & {id(v) for v in model.variables + model.optimizer.variables}
    path = tmp_path / "rigl.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [v.path for v in loaded.weights] == paths
    assert loaded._gradient_recorder is None
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert mask_digests(loaded) == mask_digests(model)


class _Reverse(dynamic.SET):
    """A method of the test's own: grows at the last free positions."""

    def grow(self, layer, remained, k, rng):
        free = np.setdiff1d(np.arange(np.prod(layer.kernel.shape)), remained)
        return free[::-1][:k]


def test_methods_are_registered_classes_looked_up_when_used():
    assert type(pruning.DynamicSparsity("set")) is dynamic.SET
    rigl = pruning.DynamicSparsity()
    assert type(rigl) is dynamic.RigL and rigl.method == "rigl"
    assert isinstance(rigl, dynamic.SET) and isinstance(rigl, pruning.DynamicSparsity)
    assert dynamic.SET(update_every=3).method == "set"
    assert dynamic.DYNAMIC_METHODS.names() == ["set", "rigl"]
    assert config_lib.sparse_training_modes() == ("static", "set", "rigl")
    with pytest.raises(ValueError, match="Unknown dynamic sparsity method 'reverse'.*"
                       "register_dynamic_method.*method='reverse'"):
        pruning.DynamicSparsity("reverse")
    with pytest.raises(ValueError, match="method='rigl'"):
        dynamic.SET("rigl")
    dynamic.register_dynamic_method("reverse", _Reverse)
    try:
        assert "reverse" in dynamic.DYNAMIC_METHODS
        assert "reverse" in config_lib.sparse_training_modes()
        update = pruning.DynamicSparsity("reverse", update_every=2, end_step=3)
        assert type(update) is _Reverse and update.method == "reverse"
        model, _ = _model(seed=7)
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        counts = ke.active_weights(model)
        x, y = _data(48)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[update])
        assert [s for s, _ in update.updates] == [2]
        assert ke.active_weights(model) == counts
    finally:
        dynamic.DYNAMIC_METHODS.unregister("reverse")
    with pytest.raises(ValueError, match="method_class"):
        dynamic.register_dynamic_method("dense", keras.callbacks.Callback)
