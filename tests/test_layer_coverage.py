"""Every layer type keras-egf prunes: exact masks after 20 Adam steps,
gf/EGF equal to the plain twin's (the stripped model, autodiff on its own
variables), save/load (.keras and .h5) and strip round trips; for a
representative few, the rest of the shared layer test
(`layer_testing.run_layer_test`: config round trip, mixed precision) on
the generated `Masked<Class>` built directly."""


import keras
import numpy as np
import pytest

import keras_egf as ke
from keras_egf import pruning
from keras_egf.callbacks import gradient_flow_on_batches
from keras_egf.masking import masked_class
import reference
from layer_testing import run_layer_test

L = keras.layers


@keras.saving.register_keras_serializable(package="tests")
class Scale(L.Layer, ke.PrunableLayer):
    """A custom PrunableLayer: elementwise scale of the last axis, and a
    second (unpruned) offset."""

    def build(self, shape):
        self.w = self.add_weight(name="w", shape=(shape[-1], 5),
                                 initializer="glorot_uniform")
        self.offset = self.add_weight(name="offset", shape=(5,),
                                      initializer="zeros")

    def call(self, x):
        return ops_matmul(x, self.w) + self.offset

    def get_prunable_weights(self):
        return [self.w]


def ops_matmul(a, b):
    return keras.ops.matmul(a, b)


@keras.saving.register_keras_serializable(package="tests")
class MyDense(L.Dense):
    """A subclass of Dense with its own call."""

    def call(self, x):
        return super().call(x) * 2.0


def _nested():
    inner = keras.Sequential([keras.Input((6,)), L.Dense(5, name="inner_dense")],
                             name="inner")
    return lambda x: inner(L.Flatten()(x))


CASES = {
    "Dense": ((6,), lambda: L.Dense(5)),
    "EinsumDense": ((6,), lambda: L.EinsumDense("ab,bc->ac", output_shape=5)),
    "Conv1D": ((7, 3), lambda: L.Conv1D(4, 3)),
    "Conv2D": ((5, 5, 3), lambda: L.Conv2D(4, 3)),
    "Conv3D": ((4, 4, 4, 2), lambda: L.Conv3D(3, 2)),
    "Conv1DTranspose": ((5, 3), lambda: L.Conv1DTranspose(4, 3)),
    "Conv2DTranspose": ((4, 4, 3), lambda: L.Conv2DTranspose(4, 2)),
    "Conv3DTranspose": ((3, 3, 3, 2), lambda: L.Conv3DTranspose(3, 2)),
    "SeparableConv1D": ((7, 3), lambda: L.SeparableConv1D(4, 3)),
    "SeparableConv2D": ((5, 5, 3), lambda: L.SeparableConv2D(4, 3)),
    "DepthwiseConv1D": ((7, 3), lambda: L.DepthwiseConv1D(3)),
    "DepthwiseConv2D": ((5, 5, 3), lambda: L.DepthwiseConv2D(3)),
    "Embedding": ((6,), lambda: L.Embedding(12, 4)),
    "SimpleRNN": ((5, 3), lambda: L.SimpleRNN(4)),
    "GRU": ((5, 3), lambda: L.GRU(4)),
    "LSTM": ((5, 3), lambda: L.LSTM(4)),
    "RNN_of_cell": ((5, 3), lambda: L.RNN(L.LSTMCell(4))),
    "RNN_stacked_cells": ((5, 3), lambda: L.RNN(L.StackedRNNCells(
        [L.SimpleRNNCell(4), L.GRUCell(3)]))),
    "MultiHeadAttention": ((4, 6), lambda: (lambda x: L.MultiHeadAttention(
        2, 3, name="mha")(x, x))),
    "Dense_subclass": ((6,), lambda: MyDense(5)),
    "PrunableLayer": ((6,), lambda: Scale()),
    "nested_model": ((2, 3), _nested),
}
# Prunable weight tensors each case's first layer adds (the Dense head adds 1).
TENSORS = {"SeparableConv1D": 1, "SeparableConv2D": 1, "SimpleRNN": 2,
           "GRU": 2, "LSTM": 2, "RNN_of_cell": 2, "RNN_stacked_cells": 4,
           "MultiHeadAttention": 4}


H5_SAMPLE = {"Dense", "Conv1D", "Embedding", "LSTM", "RNN_stacked_cells",
             "MultiHeadAttention", "PrunableLayer", "nested_model"}
# The cases also given the shared layer test (what the test below does not
# check: config round trip, mixed precision), as (plain class, arguments).
LAYER_TEST = {
    "EinsumDense": (L.EinsumDense, {"equation": "ab,bc->ac", "output_shape": 5}),
    "Embedding": (L.Embedding, {"input_dim": 12, "output_dim": 4}),
    "GRU": (L.GRU, {"units": 4}),
    "SeparableConv2D": (L.SeparableConv2D, {"filters": 4, "kernel_size": 3}),
    "Conv2DTranspose": (L.Conv2DTranspose, {"filters": 4, "kernel_size": 2}),
    "Dense_subclass": (MyDense, {"units": 5}),
    "PrunableLayer": (Scale, {}),
}


def _model(name):
    shape, make = CASES[name]
    x = keras.Input(shape, dtype="int32" if name == "Embedding" else "float32")
    y = make()(x)
    if len(y.shape) > 2:
        y = L.Flatten()(y)
    return keras.Model(x, L.Dense(3, name="head")(y), name=f"m_{name}")


def _data(name, n=16, seed=0):
    rng = np.random.default_rng(seed)
    shape = CASES[name][0]
    if name == "Embedding":
        x = rng.integers(0, 12, (n, *shape)).astype("int32")
    else:
        x = rng.normal(size=(n, *shape)).astype("float32")
    return x, rng.integers(0, 3, n)


def _reference_measures(model, plain, x, y):
    """gf/EGF by hand: autodiff of the plain twin's loss on its own
    variables (the effective weights), masks from the pruned model."""
    masks = [e.mask.numpy().astype(np.float64) for e in ke.prunable_layers(model)]
    entries = ke.prunable_layers(plain)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # The twin's training-mode forward pass as a function of its weights
    # (the backend's own autodiff: reference.gradients).
    def loss():
        return loss_fn(y, plain(x, training=True)) + sum(plain.losses)

    grads = [g.astype(np.float64)
             for g in reference.gradients(loss, [e.kernel for e in entries])]
    flat = np.concatenate([g.ravel() for g in grads])
    return {"gf_1": np.abs(flat).sum(), "gf_2": np.sqrt((flat ** 2).sum()),
            "egf_1": np.mean([np.abs(g * m).sum() for g, m in zip(grads, masks)]),
            "egf_2": np.mean([np.sqrt(((g * m) ** 2).sum())
                              for g, m in zip(grads, masks)])}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_type_is_pruned_measured_saved_and_stripped(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = ke.prune_low_magnitude(_model(name))
    entries = ke.prunable_layers(model)
    assert len(entries) == TENSORS.get(name, 1) + 1
    assert all(pruning.masks.masked_layers(model)) and len(
        pruning.masks.masked_layers(model)) == len(entries)  # none left dense
    ke.prune(model, 0.5, seed=0)
    for e in entries:
        assert e.sparsity == pytest.approx(0.5, abs=0.5 / e.mask.numpy().size + 1e-9)
    x, y = _data(name)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.gradient_flow_every = 1
    model.train_function = None
    # gf/EGF of the masked model equal the plain twin's, on the same batch.
    plain = ke.strip_pruning(model)
    expected = _reference_measures(model, plain, x, y)
    measured = gradient_flow_on_batches(model, [(x, y)])
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, rel=2e-5), key
    logs = model.train_on_batch(x, y, return_dict=True)
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, rel=2e-5), key
    # 20 Adam steps: pruned weights exactly 0, masks unchanged.
    masks = [e.mask.numpy().copy() for e in entries]
    model.fit(x, y, batch_size=4, epochs=5, verbose=0, shuffle=False,
              callbacks=[pruning.UpdatePruningStep()])
    for e, m in zip(entries, masks):
        np.testing.assert_array_equal(e.mask.numpy(), m)
        assert np.all(e.kernel.numpy()[m == 0] == 0.0), e.name
        assert np.count_nonzero(e.kernel.numpy()[m == 1]) > 0
    # Save / load (.keras always, .h5 too) and strip.
    predictions = model.predict(x, verbose=0)
    # .h5 (legacy) for a sample of the types, .keras for all (CI time).
    for suffix in (".keras", ".h5") if name in H5_SAMPLE else (".keras",):
        path = str(tmp_path / f"m{suffix}")
        model.save(path)
        loaded = keras.saving.load_model(path)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), predictions,
                                   rtol=1e-6, atol=1e-6)
        for a, b in zip(entries, ke.prunable_layers(loaded)):
            assert a.name == b.name
            np.testing.assert_array_equal(a.mask.numpy(), b.mask.numpy())
    stripped = ke.strip_pruning(model)
    assert not any("mask" in v.path for v in stripped.weights)
    for e in ke.prunable_layers(stripped):  # pruned entries are +0.0
        w = e.kernel.numpy()
        assert not np.signbit(w[w == 0]).any(), e.name
    np.testing.assert_allclose(stripped.predict(x, verbose=0), predictions,
                               rtol=1e-6, atol=1e-6)
    if name in LAYER_TEST:  # saving and exact masks in training: above
        layer_cls, kwargs = LAYER_TEST[name]
        run_layer_test(masked_class(layer_cls), kwargs, (4, *CASES[name][0]),
                       input_dtype=str(x.dtype), run_save_check=False,
                       run_training_check=False)


def _mixed_precision_cases():
    """LSTM, MultiHeadAttention and Conv1D; on JAX's CPU not MHA, whose
    float16 einsum with float32 accumulation XLA:CPU refuses ("precision
    'F16_F16_F32' is not supported by dot_general on CPU") for a stock
    keras.layers.MultiHeadAttention too."""
    if reference.BACKEND == "jax":
        import jax

        if jax.default_backend() == "cpu":
            return ("LSTM", "Conv1D")
    return ("LSTM", "MultiHeadAttention", "Conv1D")


def test_mixed_precision_lstm_and_mha_keep_exact_masks():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for name in _mixed_precision_cases():
            model = ke.prune_low_magnitude(_model(name))
            ke.prune(model, 0.7, seed=1)
            model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
                from_logits=True))
            x, y = _data(name)
            history = model.fit(x, y, batch_size=4, epochs=2, verbose=0,
                                callbacks=[pruning.UpdatePruningStep()])
            assert np.isfinite(history.history["egf_2"]).all()
            for e in ke.prunable_layers(model):
                assert np.all(e.kernel.numpy()[e.mask.numpy() == 0] == 0.0)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_gradual_pruning_reaches_the_target_in_every_layer_type():
    for name in ("LSTM", "Embedding", "MultiHeadAttention", "Conv3D",
                 "RNN_stacked_cells"):
        model = ke.prune_low_magnitude(_model(name), pruning.PolynomialDecay(
            0.2, 0.6, begin_step=1, end_step=4, frequency=1))
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        x, y = _data(name)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False,
                  callbacks=[pruning.UpdatePruningStep()])
        for e in ke.prunable_layers(model):
            size = e.mask.numpy().size
            assert int(e.mask.numpy().sum()) == max(1, round(0.4 * size)), e.name


def test_unprunable_layers_are_named_never_silent():
    x = keras.Input((6,))
    y = L.PReLU(name="prelu")(L.Dense(4, name="d")(x))
    y = L.BatchNormalization(name="bn")(L.Dropout(0.1)(y))
    model = keras.Model(x, L.Dense(2, name="out")(y))
    with pytest.warns(UserWarning, match=r"1 layer\(s\).*'prelu' \(PReLU, 4 weights\)"):
        pruned = ke.prune_low_magnitude(model)
    assert [e.name for e in ke.prunable_layers(pruned)] == ["d", "out"]
    with pytest.raises(ValueError, match="'p2' of type PReLU"):
        ke.prune_low_magnitude(L.PReLU(name="p2"))
    # Weightless and normalisation layers are accepted as no-ops.
    kept = ke.prune_low_magnitude([L.Dropout(0.5), L.BatchNormalization(),
                                   L.Flatten(), L.MaxPooling2D()])
    assert [type(l).__name__ for l in kept] == [
        "Dropout", "BatchNormalization", "Flatten", "MaxPooling2D"]


def test_fit_without_update_pruning_step_is_an_error():
    model = ke.prune_low_magnitude(_model("Dense"))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = _data("Dense")
    with pytest.raises(ValueError, match="UpdatePruningStep"):
        model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_dynamic_sparsity_and_from_scratch_pruning_on_rnn_and_custom_layers(method):
    keras.utils.set_random_seed(0)
    x = keras.Input((5, 3))
    h = L.LSTM(6, name="lstm")(x)
    model = ke.prune_low_magnitude(keras.Model(x, Scale(name="scale")(h)),
                                   pruning.ConstantSparsity(0.5, 10 ** 6))
    ke.prune(model, 0.5, method="snip",
             batches=[(np.ones((4, 5, 3), "float32"), np.zeros((4, 5)))],
             loss=keras.losses.MeanSquaredError())
    entries = ke.prunable_layers(model)
    assert [e.name for e in entries] == [
        "lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "scale"]
    before = {e.name: e.mask.numpy().copy() for e in entries}
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(32, 5, 3)).astype("float32"), rng.normal(size=(32, 5))
    dst = pruning.DynamicSparsity(method, update_every=2, drop_fraction=0.3,
                                  end_step=8)
    model.fit(xs, ys, batch_size=4, epochs=1, verbose=0, shuffle=False,
              callbacks=[dst, pruning.UpdatePruningStep()])
    changed = 0
    for e in entries:
        mask = e.mask.numpy()
        assert int(mask.sum()) == int(before[e.name].sum())  # counts kept
        assert np.all(e.kernel.numpy()[mask == 0] == 0.0)
        changed += int((mask != before[e.name]).sum())
    assert changed > 0  # connections moved in the LSTM and the custom layer


def test_dense_equivalent_refuses_layers_it_cannot_size():
    model = ke.prune_low_magnitude(_model("LSTM"))
    with pytest.raises(ValueError, match=r"also prunes \['lstm\w*/lstm_cell"):
        ke.dense_equivalent(model)
