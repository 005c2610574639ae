import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import keras_egf as ke
from keras_egf import callbacks as cb
from keras_egf.callbacks import divergence_reason, is_diverged
from reference import gradients


@pytest.mark.parametrize("epochs, points, expected", [
    (1000, 11, [0, 99, 199, 299, 399, 499, 599, 699, 799, 899, 999]),
    (5, 5, [0, 1, 2, 3, 4]),
    (1, 1, [0]),
    (10, 1, [9]),
])
def test_evaluation_epochs(epochs, points, expected):
    assert cb.evaluation_epochs(epochs, points) == expected


@pytest.mark.parametrize("epochs, points", [(10, 11), (5, 0), (0, 1)])
def test_evaluation_epochs_errors(epochs, points):
    with pytest.raises(ValueError, match="num_points|epochs"):
        cb.evaluation_epochs(epochs, points)


def _setup(seed=0):
    model = ke.build_mlp((10,), [12], 3, seed=seed)
    ke.prune(model, 0.7, seed=seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 10)).astype("float32")
    y = rng.integers(0, 3, 64)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 48, 16)]
    return model, x, y, batches


def _independent(model, batches):
    """Plain-Dense twin with the effective weights; mean-loss gradient."""
    layers = ke.prunable_layers(model)
    twin = ke.build_mlp((10,), [12], 3, masked=False)
    twin.set_weights([w for l in layers for w in
                      (l.kernel.numpy() * l.mask.numpy(), l.bias.numpy())])
    kernels = [l.kernel for l in ke.prunable_layers(twin)]
    n = sum(len(b[1]) for b in batches)
    total = [np.zeros(k.shape) for k in kernels]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for x, y in batches:
        grads = gradients(lambda x=x, y=y: loss_fn(y, twin(x)), kernels)
        for i, g in enumerate(grads):
            total[i] += g.astype(np.float64) * len(y) / n
    masks = [l.mask.numpy() for l in layers]
    flat = np.concatenate([g.ravel() for g in total])
    return {"gf_1": np.abs(flat).sum(), "gf_2": np.sqrt((flat ** 2).sum()),
            "egf_1": np.mean([np.abs(g * m).sum() for g, m in zip(total, masks)]),
            "egf_2": np.mean([np.linalg.norm((g * m).ravel()) for g, m in zip(total, masks)])}


def test_callback_values_match_independent_recomputation(tmp_path):
    model, x, y, batches = _setup()
    expected = []

    class Expect(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch in (0, 2, 4):
                expected.append(_independent(self.model, batches))

    egf = cb.EGFCallback(batches, epochs=5, num_points=3, log_dir=str(tmp_path))
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0,
                        callbacks=[Expect(), egf])
    assert [p["epoch"] for p in egf.points] == [0, 2, 4]
    for point, exp in zip(egf.points, expected):
        for m in cb.MEASURES:
            np.testing.assert_allclose(point[m], exp[m], rtol=1e-5)
    for m in cb.MEASURES:
        np.testing.assert_allclose(egf.average[m], np.mean([e[m] for e in expected]),
                                   rtol=1e-5)
    # The logs name the fixed-batch measure, at the evaluation epochs only.
    assert len(history.history["fixed_batch_egf_2"]) == 3
    assert not [k for k in history.history if k.startswith(("eval_", "val_"))]
    assert set(cb.log_keys()) <= set(history.history)
    # Pruned positions carry gradient: plain gf_1 exceeds L * EGF_1.
    assert egf.points[0]["gf_1"] > 2 * egf.points[0]["egf_1"]
    # TensorBoard: egf scalars at exactly those steps.
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = acc.Tags()["tensors"] + acc.Tags()["scalars"]
    assert "egf/egf_2" in tags and "egf_layers/hidden_0/egf_2" in tags
    events = (acc.Tensors("egf/egf_2") if "egf/egf_2" in acc.Tags()["tensors"]
              else acc.Scalars("egf/egf_2"))
    assert [e.step for e in events] == [0, 2, 4]
    values = [float(tf.make_ndarray(e.tensor_proto)) if hasattr(e, "tensor_proto")
              else e.value for e in events]
    np.testing.assert_allclose(values, [p["egf_2"] for p in egf.points], rtol=1e-6)


def test_callback_reads_epochs_from_fit():
    model, x, y, batches = _setup()
    egf = cb.EGFCallback(batches, num_points=3)  # no epochs=: fit's
    model.fit(x, y, batch_size=16, epochs=5, verbose=0, callbacks=[egf])
    assert [p["epoch"] for p in egf.points] == [0, 2, 4]
    default = cb.EGFCallback(batches)  # num_points: min(11, epochs)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[default])
    assert [p["epoch"] for p in default.points] == [0, 1, 2]


def test_callback_epochs_other_than_fits_are_an_error():
    model, x, y, batches = _setup()
    egf = cb.EGFCallback(batches, epochs=10, num_points=3)
    with pytest.raises(ValueError, match="epochs=10.*epochs=5"):
        model.fit(x, y, batch_size=16, epochs=5, verbose=0, callbacks=[egf])
    assert egf.points == []
    same = cb.EGFCallback(batches, epochs=2, num_points=2)  # compatible
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[same])
    assert [p["epoch"] for p in same.points] == [0, 1]


def test_callback_takes_x_y_as_validation_data_does(tmp_path):
    model, x, y, _ = _setup()
    pair = cb.EGFCallback((x[:48], y[:48]), num_points=1)
    batch_list = cb.EGFCallback([(x[:48], y[:48])], num_points=1)
    dataset = cb.EGFCallback(tf.data.Dataset.from_tensor_slices(
        (x[:48], y[:48])).batch(48), num_points=1)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
              callbacks=[pair, batch_list, dataset])
    expected = _independent(model, [(x[:48], y[:48])])
    for egf in (pair, batch_list, dataset):
        assert len(egf.batches) == 1
        for m in cb.MEASURES:
            np.testing.assert_allclose(egf.points[0][m], expected[m], rtol=1e-5)
    with_weights = cb.EGFCallback((x[:8], y[:8], np.ones(8, "float32")), num_points=1)
    assert len(with_weights.batches) == 1 and len(with_weights.batches[0]) == 3


def test_divergence_monitor_stops_on_nan():
    model, x, y, _ = _setup()
    model.compile(optimizer=keras.optimizers.SGD(1e6),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = cb.DivergenceMonitor()
    history = model.fit(x, y, batch_size=8, epochs=20, verbose=0, callbacks=[monitor])
    assert monitor.diverged and monitor.epoch is not None
    assert len(history.history["loss"]) == monitor.epoch + 1 < 20


# --- Each fit is a new run: a callback used again starts as a fresh one ---


def test_egf_callback_starts_each_fit_afresh():
    model, x, y, batches = _setup()
    used = cb.EGFCallback(batches, num_points=2)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[used])
    assert [p["epoch"] for p in used.points] == [0, 2]
    fresh = cb.EGFCallback(batches, num_points=2)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[used, fresh])
    assert [p["epoch"] for p in fresh.points] == [0, 1]
    assert used.points == fresh.points
    assert used.average == fresh.average
    assert used.epochs_to_evaluate == fresh.epochs_to_evaluate == [0, 1]


def test_divergence_monitor_starts_each_fit_afresh():
    model, x, y, _ = _setup()
    model.compile(optimizer=keras.optimizers.SGD(1e6),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    used = cb.DivergenceMonitor()
    model.fit(x, y, batch_size=8, epochs=20, verbose=0, callbacks=[used])
    assert used.diverged
    other, x, y, _ = _setup(seed=1)  # a sane run
    fresh = cb.DivergenceMonitor()
    other.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[used, fresh])
    state = ("diverged", "reason", "epoch", "batch", "_epoch")
    assert [getattr(used, k) for k in state] == [getattr(fresh, k) for k in state]
    assert not used.diverged and used.reason is None and used.epoch is None


def _scheduled(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(12, name="d1"),
                              keras.layers.Dense(3, name="d2")])
    model = ke.prune_low_magnitude(model, ke.pruning.PolynomialDecay(
        0.2, 0.8, begin_step=1, end_step=12, frequency=2))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    return model


def test_update_pruning_step_starts_each_fit_afresh():
    """The same schedule on two identical models: the callback used in both
    fits has, after the second, the state of a fresh one used in it only."""
    _, x, y, _ = _setup()
    runs = {}
    for name in ("used", "fresh"):
        model = _scheduled()
        first = ke.pruning.UpdatePruningStep()
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
                  callbacks=[first])  # steps 1..4
        second = first if name == "used" else ke.pruning.UpdatePruningStep()
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
                  callbacks=[second])  # steps 5..8
        runs[name] = (second, ke.get_masks(model))
    (used, used_masks), (fresh, fresh_masks) = runs["used"], runs["fresh"]
    assert [s for s, _ in used.updates] == [5, 7]
    assert used.updates == fresh.updates and used._step == fresh._step == 8
    for name, mask in fresh_masks.items():
        np.testing.assert_array_equal(used_masks[name], mask)


def _scalars(log_dir, tag):
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    events = acc.Tensors(tag)
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events]


def test_pruning_summaries_start_each_fit_afresh(tmp_path):
    _, x, y, _ = _setup()
    model = _scheduled()
    used = ke.pruning.PruningSummaries(log_dir=tmp_path / "used")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
              callbacks=[ke.pruning.UpdatePruningStep(), used])
    used.set_model(model)
    used.on_epoch_begin(0)  # a run stopped by an error leaves its writer open
    fresh = ke.pruning.PruningSummaries(log_dir=tmp_path / "fresh")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
              callbacks=[ke.pruning.UpdatePruningStep(), used, fresh])
    assert used._writer is None and fresh._writer is None
    for tag in ("pruning/target_sparsity", "pruning/d1/sparsity"):
        again, new = _scalars(tmp_path / "used", tag), _scalars(tmp_path / "fresh", tag)
        assert [s for s, _ in new] == [8, 12, 16]  # 2 epoch starts, the end
        assert again[-len(new):] == new


def test_the_divergence_rule_is_the_monitors_on_floats_and_tensors():
    """The packed trainer freezes a member by the rule DivergenceMonitor
    applies to a logged loss (keras_egf.callbacks.is_diverged)."""
    losses = [0.5, 1e6, 2e6, float("nan"), float("inf"), -float("inf")]
    expected = [False, False, True, True, True, True]
    assert [is_diverged(v) for v in losses] == expected
    assert [divergence_reason(v) is not None for v in losses] == expected
    assert list(np.asarray(is_diverged(tf.constant(losses)))) == expected
    assert list(np.asarray(is_diverged(tf.constant(losses), None))) == [
        False, False, False, True, True, True]
