"""TFMOT's workflow on Keras 3: prune_low_magnitude, schedules, the
UpdatePruningStep / PruningSummaries callbacks, strip_pruning, save/load
without keras_egf."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import keras_egf as ke
from keras_egf import pruning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _keras3_model():
    return keras.Sequential([keras.Input((12,)),
                             keras.layers.Dense(16, activation="relu", name="d1"),
                             keras.layers.Dense(3, name="d2")])


def _data(n=320):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 12)).astype("float32"), rng.integers(0, 3, n)


def test_schedules_match_tfmot_formulas():
    poly = pruning.PolynomialDecay(0.1, 0.8, begin_step=10, end_step=50,
                                   power=3, frequency=10)
    for step in (10, 20, 30, 40, 50):
        expected = 0.8 + (0.1 - 0.8) * (1 - (step - 10) / 40) ** 3
        assert poly(step) == (True, pytest.approx(expected))
    assert poly(15)[0] is False and poly(60)[0] is False and poly(0)[0] is False
    const = pruning.ConstantSparsity(0.5, begin_step=0, frequency=100)
    assert const(0) == (True, 0.5) and const(150) == (False, 0.5)
    with pytest.raises(ValueError, match="end_step=-1"):
        pruning.PolynomialDecay(0.0, 0.5, 0, -1)
    with pytest.raises(ValueError, match="target_sparsity"):
        pruning.ConstantSparsity(1.5)
    with pytest.raises(ValueError, match="pruning_schedule must be"):
        pruning.as_schedule("poly")


def test_tutorial_prune_fit_strip_save_load(tmp_path):
    x, y = _data()
    base = _keras3_model()
    before = base.predict(x[:8], verbose=0)
    schedule = pruning.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=30,
                                       frequency=10)
    model = ke.prune_low_magnitude(base, schedule)
    assert isinstance(model, ke.MaskedModel)
    assert [type(l).__name__ for l in ke.prunable_layers(model)] == [
        "MaskedDense", "MaskedDense"]
    np.testing.assert_allclose(model.predict(x[:8], verbose=0), before, rtol=1e-6)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    update = pruning.UpdatePruningStep()
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                        callbacks=[update, pruning.PruningSummaries(str(tmp_path / "tb"))])
    # TFMOT's pruning_step: the k-th batch is step k (no step 0).
    assert [s for s, _ in update.updates] == [10, 20, 30]
    for layer in ke.prunable_layers(model):
        size = int(np.prod(layer.kernel.shape))
        assert abs(int(layer.mask.numpy().sum()) - round(0.25 * size)) <= 1
        pruned = layer.mask.numpy() == 0
        assert np.all(layer.kernel.numpy()[pruned] == 0.0)
        slots = pruning.gradual.optimizer_slots(model.optimizer, layer.kernel)
        assert len(slots) == 2  # Adam's two moments
        for slot in slots:
            assert np.all(slot.numpy()[pruned] == 0.0), slot.path
    assert np.isfinite(history.history["egf_2"][0])
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["tensors"] + acc.Tags()["scalars"]
    assert "pruning/d1/sparsity" in tags and "pruning/target_sparsity" in tags
    # Strip: plain Dense layers, no masks, same predictions.
    stripped = ke.strip_pruning(model)
    assert [type(l).__name__ for l in stripped.layers if l.weights] == [
        "Dense", "Dense"]
    assert not any("mask" in w.path for w in stripped.weights)
    expected = model.predict(x[:16], verbose=0)
    np.testing.assert_allclose(stripped.predict(x[:16], verbose=0), expected,
                               rtol=1e-6, atol=1e-7)
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    np.save(tmp_path / "x.npy", x[:16])
    script = ("import json, sys, numpy as np, keras\n"
              f"m = keras.saving.load_model({str(path)!r})\n"
              f"p = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)\n"
              "print(json.dumps({'egf': 'keras_egf' in sys.modules, 'p': p.tolist()}))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["egf"] is False
    np.testing.assert_allclose(np.array(out["p"]), expected, rtol=1e-6, atol=1e-7)


def test_masks_only_grow_sparser_and_exclude_is_kept_dense():
    x, y = _data(n=64)
    model = ke.prune_low_magnitude(_keras3_model(),
                                   pruning.ConstantSparsity(0.5, 0, frequency=2),
                                   exclude="d2")
    assert type(model.get_layer("d2")).__name__ == "Dense"
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    masks = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            masks.append(model.get_layer("d1").mask.numpy().copy())

    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[pruning.UpdatePruningStep(), Record()])
    for a, b in zip(masks, masks[1:]):
        assert np.all(b <= a)
    assert int(masks[-1].sum()) == 12 * 16 // 2


def test_tfmot_schedule_objects_are_accepted():
    script = (
        "import keras_egf.pruning as p\n"
        "import tensorflow_model_optimization as tfmot\n"
        "s = tfmot.sparsity.keras.PolynomialDecay(0.1, 0.8, 10, 50, power=3, frequency=10)\n"
        "ours = p.PolynomialDecay(0.1, 0.8, 10, 50, power=3, frequency=10)\n"
        "w = p.as_schedule(s)\n"
        "for step in (0, 10, 15, 20, 50, 60):\n"
        "    a, b = w(step), ours(step)\n"
        "    assert a[0] == b[0] and abs(a[1] - b[1]) < 1e-6, (step, a, b)\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


_TFMOT_TRAIN = r"""
import sys
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

folder = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 12)).astype("float32"); y = rng.integers(0, 3, 64)
base = tf.keras.Sequential([tf.keras.Input((12,)),
                            tf.keras.layers.Dense(16, activation="relu", name="d1"),
                            tf.keras.layers.Dense(3, name="d2")])
model = tfmot.sparsity.keras.prune_low_magnitude(
    base, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.6, 0, frequency=1))
model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=16, epochs=2, verbose=0,
          callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
model.save(folder + "/pruned.h5")
np.save(folder + "/x.npy", x)
np.save(folder + "/pred.npy", model.predict(x, verbose=0))
masks = {l.layer.name: v[1].numpy() for l in model.layers for v in l.pruning_vars}
np.savez(folder + "/masks.npz", **masks)
"""


def test_from_tfmot_same_masks_and_predictions(tmp_path):
    from keras_egf.interop import from_tfmot

    proc = subprocess.run([sys.executable, "-c", _TFMOT_TRAIN, str(tmp_path)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_USE_LEGACY_KERAS="1",
                                   TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = from_tfmot(str(tmp_path / "pruned.h5"))
    assert isinstance(model, ke.MaskedModel)
    expected = dict(np.load(tmp_path / "masks.npz"))
    assert sorted(expected) == ["d1", "d2"]
    for name, mask in expected.items():
        np.testing.assert_array_equal(model.get_layer(name).mask.numpy(), mask)
        assert mask.mean() == pytest.approx(0.4, abs=0.05)
    x = np.load(tmp_path / "x.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               np.load(tmp_path / "pred.npy"), rtol=1e-5, atol=1e-6)
    # Its gradient flow can be measured like any keras-egf model's.
    from keras_egf.callbacks import gradient_flow_on_batches
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    y = np.random.default_rng(0).integers(0, 3, len(x))
    measures = gradient_flow_on_batches(model, [(x, y)])
    # Pruned positions carry gradient: gf_1 exceeds L * EGF_1 (L = 2).
    assert measures["gf_1"] > 2 * measures["egf_1"] > 0
    with pytest.raises(ValueError, match="no such file"):
        from_tfmot(str(tmp_path / "missing.h5"))


def test_gradual_pruning_by_a_registered_method():
    x, y = _data(n=32)
    # begin_step=1: the first batch is TFMOT's pruning step 1.
    model = ke.prune_low_magnitude(_keras3_model(),
                                   pruning.ConstantSparsity(0.75, 1, frequency=100))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    expected = pruning.scores.synflow_scores(model)  # the update's own scores
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[pruning.UpdatePruningStep(method="synflow")])
    for layer in ke.prunable_layers(model):
        mask = layer.mask.numpy()
        count = pruning.kept_count(mask.size, 0.75)
        assert int(mask.sum()) == count
        np.testing.assert_array_equal(
            mask, pruning.top_k_mask(expected[layer.name], count))


def test_exported_saved_model_of_a_stripped_model_has_no_masks(tmp_path):
    import tensorflow as tf

    x, _ = _data(n=8)
    pruned = ke.prune_low_magnitude(_keras3_model())
    ke.prune(pruned, 0.5, seed=0)
    stripped = ke.strip_pruning(pruned)
    stripped.export(str(tmp_path / "saved"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    names = sorted(v.name for v in loaded.variables)
    assert names == ["d1/bias:0", "d1/kernel:0", "d2/bias:0", "d2/kernel:0"]
    kernel = [v for v in loaded.variables if v.name == "d1/kernel:0"][0].numpy()
    assert np.count_nonzero(kernel) == 12 * 16 // 2  # the zeros are kept
    # The input structure is kept: the endpoint takes a bare tensor.
    np.testing.assert_allclose(loaded.serve(x).numpy(),
                               pruned.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


def test_prune_low_magnitude_on_layers_with_their_own_schedules(tmp_path):
    x, y = _data()
    built = keras.layers.Dense(16, activation="relu", name="d1")
    built.build((None, 12))
    kernel = built.kernel.numpy().copy()
    # TFMOT's per-layer form: each layer carries its schedule.
    d1 = ke.prune_low_magnitude(built, pruning.ConstantSparsity(0.5, 1))
    d2 = ke.prune_low_magnitude(keras.layers.Dense(3, name="d2"),
                                pruning.ConstantSparsity(0.8, 1))
    assert isinstance(d1, ke.MaskedDense) and isinstance(d2, ke.MaskedDense)
    np.testing.assert_array_equal(d1.kernel.numpy(), kernel)  # weights kept
    assert not d2.built
    model = ke.MaskedModel.wrap(keras.Sequential([keras.Input((12,)), d1, d2]))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    update = pruning.UpdatePruningStep()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0,
              callbacks=[update, pruning.PruningSummaries(str(tmp_path / "tb"))])
    assert sorted(update.updates) == [(1, 0.5), (1, 0.8)]
    assert int(d1.mask.numpy().sum()) == 12 * 16 // 2
    assert int(d2.mask.numpy().sum()) == round(0.2 * 16 * 3)
    for layer in (d1, d2):
        assert np.all(layer.kernel.numpy()[layer.mask.numpy() == 0] == 0.0)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["tensors"] + acc.Tags()["scalars"]
    assert {"pruning/d1/target_sparsity", "pruning/d2/target_sparsity"} <= set(tags)
    # A list gives a list; a layer with no masked version is refused by name.
    pair = ke.prune_low_magnitude([keras.layers.Dense(4), keras.layers.Conv2D(2, 3)])
    assert [type(l).__name__ for l in pair] == ["MaskedDense", "MaskedConv2D"]
    with pytest.raises(ValueError, match="'c1' of type PReLU"):
        ke.prune_low_magnitude(keras.layers.PReLU(name="c1"))


def test_update_pruning_step_without_a_schedule_names_the_layers():
    x, y = _data(32)
    model = ke.MaskedModel.wrap(keras.Sequential(
        [keras.Input((12,)), ke.MaskedDense(3, name="only")]))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"none for layers \['only'\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])


@pytest.mark.parametrize("method", ["snip", "grasp", "egf"])
def test_update_pruning_step_refuses_a_method_that_needs_data(method):
    with pytest.raises(ValueError, match=f"cannot use method '{method}'.*"
                       f"Received: method='{method}'"):
        pruning.UpdatePruningStep(method=method)
    with pytest.raises(ValueError, match="'bogus'"):
        pruning.UpdatePruningStep(method="bogus")
    assert pruning.UpdatePruningStep(method="synflow").method == "synflow"


def test_schedule_resumes_after_save_load_at_tfmot_steps(tmp_path):
    # TFMOT's pruning_step for batch k is k and is saved with the model;
    # here the step continues from the saved optimizer's iterations and the
    # schedule is saved in each layer's config (not passed again).
    x, y = _data(n=64)
    schedule = pruning.PolynomialDecay(0.2, 0.8, begin_step=1, end_step=8,
                                       frequency=1)
    model = ke.prune_low_magnitude(_keras3_model(), schedule)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    first = pruning.UpdatePruningStep()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
              callbacks=[first])
    path = str(tmp_path / "half.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("d1").pruning_schedule == schedule
    second = pruning.UpdatePruningStep()
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
               callbacks=[second])

    def tfmot(step):  # TFMOT's PolynomialDecay, written out
        progress = min(1.0, max(0.0, (step - 1) / 7))
        return 0.8 + (0.2 - 0.8) * (1 - progress) ** 3

    steps = [s for s, _ in first.updates + second.updates]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    for step, sparsity in first.updates + second.updates:
        assert sparsity == pytest.approx(tfmot(step), abs=1e-12)
    for layer in ke.prunable_layers(loaded):
        assert int(layer.mask.numpy().sum()) == round(0.2 * layer.mask.numpy().size)


def test_prune_scope_loads_a_custom_prunable_layer_in_a_fresh_process(tmp_path):
    define = (
        "import keras, numpy as np\n"
        "import keras_egf as ke\n"
        "@keras.saving.register_keras_serializable(package='user')\n"
        "class Scale(keras.layers.Layer, ke.PrunableLayer):\n"
        "    def build(self, shape):\n"
        "        self.w = self.add_weight(name='w', shape=(shape[-1],))\n"
        "    def call(self, x):\n"
        "        return x * self.w\n"
        "    def get_prunable_weights(self):\n"
        "        return [self.w]\n")
    save = define + (
        "m = keras.Sequential([keras.Input((8,)), Scale(name='s')])\n"
        "p = ke.prune_low_magnitude(m)\n"
        "ke.prune(p, 0.5, seed=0)\n"
        f"p.save({str(tmp_path / 'm.keras')!r})\n"
        f"np.save({str(tmp_path / 'w.npy')!r}, p.get_layer('s').w.numpy())\n")
    load = define + (
        "import sys\n"
        "with ke.prune_scope():\n"
        f"    q = keras.saving.load_model({str(tmp_path / 'm.keras')!r})\n"
        "layer = q.get_layer('s')\n"
        f"w = np.load({str(tmp_path / 'w.npy')!r})\n"
        "assert type(layer).__name__ == 'MaskedScale', type(layer)\n"
        "assert np.array_equal(layer.w.numpy(), w)\n"
        "assert int(ke.prunable_layers(q)[0].mask.numpy().sum()) == 4\n"
        "print('ok')\n")
    for script in (save, load):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                              text=True, timeout=300, cwd=ROOT,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok" in proc.stdout


def test_input_and_output_structure_kept_without_warnings(tmp_path):
    import warnings

    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    merged = keras.layers.Concatenate()([keras.layers.Dense(5, name="da")(a), b])
    model = keras.Model({"a": a, "b": b}, {"y": keras.layers.Dense(3, name="o")(merged)})
    x = {"a": np.ones((2, 4), "float32"), "b": np.ones((2, 3), "float32")}
    y = {"y": np.array([0, 1])}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*structure of .*inputs")
        pruned = ke.prune_low_magnitude(model)
        assert set(pruned.input) == {"a", "b"} and set(pruned.output) == {"y"}
        assert set(pruned(x)) == {"y"}
        ke.prune(pruned, 0.5, method="snip", batches=[(x, y)])
        stripped = ke.strip_pruning(pruned)
        assert stripped.get_config() == model.get_config()
        assert set(stripped(x)) == {"y"}
    # A single-input Sequential: single .input/.output, a bare-tensor
    # serving endpoint.
    seq = ke.prune_low_magnitude(_keras3_model())
    assert not isinstance(seq.input, (list, dict)) and not isinstance(seq.output, list)
    stripped = ke.strip_pruning(seq)
    assert isinstance(stripped, keras.Sequential)
    assert [l.name for l in stripped.layers] == ["d1", "d2"]
