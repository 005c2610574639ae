import keras
import numpy as np
import pytest

import keras_egf as ke
from reference import (BACKEND, custom_loop_step, effective_twin, gradients,
                       reference_measures, to_numpy)

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.1),
    "momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "adagrad": lambda: keras.optimizers.Adagrad(0.1),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.5),
}


def _data(n=64, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype("float32"), rng.integers(0, k, n)


def _sparse_mlp(seed=0, **options):
    options.setdefault("gradient_flow_every", 1)
    model = ke.build_mlp((12,), [16, 16], 3, activation="relu", seed=seed,
                         **options)
    ke.prune(model, 0.8, seed=seed)
    return model


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class RecordingOptimizerGradients:
    """Records the gradients the optimizer receives (eager steps):
    `apply_gradients` on TensorFlow, `stateless_apply` on JAX, `apply` on
    torch."""

    def __init__(self, optimizer, model):
        self.grads = []
        if BACKEND == "torch":
            original_apply = optimizer.apply

            def apply(grads, variables=None):
                self.grads.append({v.path: to_numpy(g) for g, v in
                                   zip(grads, variables)})
                return original_apply(grads, variables)

            optimizer.apply = apply
            return
        if BACKEND == "jax":
            original = optimizer.stateless_apply

            def stateless_apply(variables, grads, trainable_values):
                self.grads.append({v.path: np.array(g) for g, v in
                                   zip(grads, model.trainable_variables)})
                return original(variables, grads, trainable_values)

            optimizer.stateless_apply = stateless_apply
            return
        original = optimizer.apply_gradients

        def apply_gradients(grads_and_vars, *args, **kwargs):
            grads_and_vars = list(grads_and_vars)
            self.grads.append({v.path: np.array(g) for g, v in grads_and_vars})
            return original(grads_and_vars, *args, **kwargs)

        optimizer.apply_gradients = apply_gradients


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_masked_weights_and_gradients_stay_zero_for_50_steps(name):
    model = _sparse_mlp()
    optimizer = OPTIMIZERS[name]()
    model.compile(optimizer=optimizer, loss=_loss(), run_eagerly=True)
    recorder = RecordingOptimizerGradients(optimizer, model)
    x, y = _data(n=50 * 8)
    before = {l.name: l.kernel.numpy().copy() for l in ke.prunable_layers(model)}
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert len(recorder.grads) == 50
    for layer in ke.prunable_layers(model):
        mask = layer.mask.numpy()
        kernel = layer.kernel.numpy()
        assert np.all(kernel[mask == 0] == 0.0), name
        assert not np.allclose(kernel[mask == 1], before[layer.name][mask == 1])
        for step in recorder.grads:
            assert np.all(step[layer.kernel.path][mask == 0] == 0.0)
        # The optimizer state of pruned entries stays zero too.
        for var in optimizer.variables:
            if var.shape == kernel.shape and layer.name in var.path and \
                    "accumulator" not in var.path:
                assert np.all(var.numpy()[mask == 0] == 0.0), var.path


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("mask_product", ["identity", "straight_through"])
def test_compiled_training_keeps_masked_weights_zero(jit_compile, mask_product):
    model = _sparse_mlp(mask_product=mask_product)
    model.compile(optimizer=OPTIMIZERS["adamw"](), loss=_loss(),
                  jit_compile=jit_compile, metrics=["accuracy"])
    x, y = _data(n=256)
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    for layer in ke.prunable_layers(model):
        assert np.all(layer.kernel.numpy()[layer.mask.numpy() == 0] == 0.0)
    for key in ("gf_1", "gf_2", "egf_1", "egf_2", "loss", "accuracy"):
        assert len(history.history[key]) == 3
        assert np.all(np.isfinite(history.history[key]))
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    assert model.predict(x, verbose=0).shape == (256, 3)


def _reference_measures(twin, weights, x, y):
    """gf/egf of one step from a plain-Dense twin holding effective weights."""
    twin.set_weights(weights["effective"])
    kernels = [l.kernel for l in twin.layers if isinstance(l, keras.layers.Dense)]
    grads = [g.astype(np.float64) for g in gradients(
        lambda: _loss()(y, twin(x, training=True)), kernels)]
    masks = weights["masks"]
    flat = np.concatenate([g.ravel() for g in grads])
    return {
        "gf_1": np.abs(flat).sum(),
        "gf_2": np.sqrt((flat**2).sum()),
        "egf_1": np.mean([np.abs(g * m).sum() for g, m in zip(grads, masks)]),
        "egf_2": np.mean([np.sqrt(((g * m) ** 2).sum()) for g, m in zip(grads, masks)]),
    }


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("mask_product", ["identity", "straight_through"])
def test_history_matches_independent_per_step_recomputation(mask_product,
                                                            jit_compile):
    # Under XLA the measuring step is split (the measure outside the XLA
    # cluster): the values are the same.
    model = _sparse_mlp(seed=4, mask_product=mask_product)
    twin = ke.build_mlp((12,), [16, 16], 3, masked=False, seed=9)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=_loss(), jit_compile=jit_compile)
    x, y = _data(n=96, seed=5)
    batch = 16
    per_step = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_begin(self, step, logs=None):
            # self.model: on JAX, Keras writes the training state back to
            # the variables for a callback that reads it.
            layers = ke.prunable_layers(self.model)
            weights = {
                "effective": [w for l in layers for w in
                              (l.kernel.numpy() * l.mask.numpy(), l.bias.numpy())],
                "masks": [l.mask.numpy() for l in layers],
            }
            sl = slice(step * batch, (step + 1) * batch)
            per_step.append(_reference_measures(twin, weights, x[sl], y[sl]))

    history = model.fit(x, y, batch_size=batch, epochs=1, shuffle=False,
                        verbose=0, callbacks=[Snapshot()])
    assert len(per_step) == 6
    for key in ("gf_1", "gf_2", "egf_1", "egf_2"):
        expected = np.mean([s[key] for s in per_step])
        np.testing.assert_allclose(history.history[key][0], expected, rtol=1e-5)
    # Pruned positions carry gradient: gf_1 > L * EGF_1 on a sparse model.
    assert history.history["gf_1"][0] > 3 * history.history["egf_1"][0] * 1.5


def test_dense_model_reports_egf1_equal_gf1_over_layers():
    model = ke.build_mlp((12,), [16, 16], 3, masked=False, seed=1,
                         gradient_flow_every=1)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=_loss())
    x, y = _data(n=32)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["egf_1"][0],
                               history.history["gf_1"][0] / 3, rtol=1e-5)


def test_wrap_sequential_model_and_track_off():
    seq = keras.Sequential([keras.Input((12,)), ke.MaskedDense(8, activation="relu"),
                            ke.MaskedDense(3)])
    model = ke.MaskedModel.wrap(seq, track_gradient_flow=False)
    ke.prune(model, 0.5, seed=0)
    model.compile(optimizer="adam", loss=_loss())
    history = model.fit(*_data(n=32), epochs=1, verbose=0)
    assert "egf_1" not in history.history
    assert all(np.all(l.kernel.numpy()[l.mask.numpy() == 0] == 0)
               for l in ke.prunable_layers(model))
    with pytest.raises(ValueError, match="mask_product='bogus'"):
        ke.MaskedModel.wrap(seq, mask_product="bogus")


def test_fit_reestablishes_zero_kernel_after_direct_assignment():
    model = _sparse_mlp()
    layer = ke.prunable_layers(model)[0]
    layer.kernel.assign(np.ones(layer.kernel.shape, "float32"))
    model.compile(optimizer="sgd", loss=_loss())
    model.fit(*_data(n=16), epochs=1, verbose=0)
    assert np.all(layer.kernel.numpy()[layer.mask.numpy() == 0] == 0.0)


def _reference_per_step(model, x, y, batch):
    """Callback recording the twin-recomputed measures before each step."""
    per_step = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_begin(self, step, logs=None):
            start = (step * batch) % len(x)
            sl = slice(start, start + batch)
            per_step.append(reference_measures(
                self.model, [(x[sl], y[sl])], input_shape=(12,),
                hidden_widths=[16, 16], num_classes=3))

    return per_step, Snapshot()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradient_flow_every_n_steps_measures_exactly_those_steps(jit_compile):
    model = _sparse_mlp(seed=2, gradient_flow_every=3)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=_loss(),
                  jit_compile=jit_compile)
    x, y = _data(n=80, seed=6)
    per_step, snapshot = _reference_per_step(model, x, y, batch=8)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False,
                        verbose=0, callbacks=[snapshot])
    assert len(per_step) == 20
    # Each epoch's steps 0, 3, 6, 9 (global steps 10, 13, 16, 19 in epoch 1).
    for epoch, steps in enumerate([(0, 3, 6, 9), (10, 13, 16, 19)]):
        for key in ke.GRADIENT_FLOW_METRICS:
            expected = np.mean([per_step[s][key] for s in steps])
            np.testing.assert_allclose(history.history[key][epoch], expected,
                                       rtol=1e-5, err_msg=f"{key} {epoch}")
    # train_on_batch measures on every call (each is its own "epoch").
    for start in (0, 8):
        expected = reference_measures(
            model, [(x[start:start + 8], y[start:start + 8])], input_shape=(12,),
            hidden_widths=[16, 16], num_classes=3)
        logs = model.train_on_batch(x[start:start + 8], y[start:start + 8],
                                    return_dict=True)
        np.testing.assert_allclose(logs["gf_2"], expected["gf_2"], rtol=1e-5)
    config = model.get_config()
    assert config["gradient_flow_every"] == 3
    assert ke.MaskedModel.from_config(config).gradient_flow_every == 3
    with pytest.raises(ValueError, match="gradient_flow_every=0"):
        _sparse_mlp(gradient_flow_every=0)


def test_default_gradient_flow_every_measures_every_step():
    """The default (1) measures every step: History's epoch value is the
    mean over all of the epoch's steps, for a model and for the binaries'
    config that leave the option unset."""
    from keras_egf.config import ComparisonConfig

    assert ComparisonConfig().gradient_flow_every == 1
    model = ke.build_mlp((12,), [16, 16], 3, activation="relu", seed=2)
    ke.prune(model, 0.8, seed=2)
    assert model.gradient_flow_every == 1
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=_loss())
    x, y = _data(n=40, seed=6)
    per_step, snapshot = _reference_per_step(model, x, y, batch=8)
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                        callbacks=[snapshot])
    assert len(per_step) == 5
    for key in ke.GRADIENT_FLOW_METRICS:
        np.testing.assert_allclose(history.history[key][0],
                                   np.mean([s[key] for s in per_step]),
                                   rtol=1e-5, err_msg=key)


def test_gradient_flow_every_counts_calls_under_steps_per_execution():
    """With steps_per_execution=S a call of the train function runs S steps
    and N counts calls: N=2, S=2 measures each epoch's steps 0-1, 4-5, 8-9.
    The per-step references come from the same training one step a call."""
    if BACKEND == "torch":
        pytest.skip("Keras's torch trainer takes steps_per_execution=1 only")
    x, y = _data(n=80, seed=6)
    reference_model = _sparse_mlp(seed=2)
    reference_model.compile(optimizer=keras.optimizers.SGD(0.05), loss=_loss())
    per_step, snapshot = _reference_per_step(reference_model, x, y, batch=8)
    reference_model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                        callbacks=[snapshot])
    model = _sparse_mlp(seed=2, gradient_flow_every=2)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=_loss(),
                  steps_per_execution=2)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for epoch in (0, 1):
        steps = [10 * epoch + s for s in (0, 1, 4, 5, 8, 9)]
        for key in ke.GRADIENT_FLOW_METRICS:
            expected = np.mean([per_step[s][key] for s in steps])
            np.testing.assert_allclose(history.history[key][epoch], expected,
                                       rtol=1e-5, err_msg=f"{key} {epoch}")


def _dense_weights_into(model):
    """Loads a dense checkpoint's weights: pruned kernel entries non-zero."""
    rng = np.random.default_rng(7)
    weights = [rng.normal(size=w.shape).astype("float32") if "mask" not in w.path
               else w.numpy() for w in model.weights]
    model.set_weights(weights)
    layer = ke.prunable_layers(model)[0]
    assert np.any(layer.kernel.numpy()[layer.mask.numpy() == 0] != 0)


def _effective_loss(model, x, y):
    twin = effective_twin(model, input_shape=(12,), hidden_widths=[16, 16],
                          num_classes=3)
    return float(_loss()(y, twin(x))), to_numpy(twin(x))


@pytest.mark.parametrize("mask_product", ["identity", "straight_through"])
def test_every_entry_point_sees_kernel_times_mask(mask_product):
    x, y = _data(n=32, seed=8)
    model = _sparse_mlp(seed=1, mask_product=mask_product)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=_loss())
    _dense_weights_into(model)
    expected_loss, expected_out = _effective_loss(model, x, y)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected_out,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), expected_loss,
                               rtol=1e-5)
    # A custom loop calling train_step directly (no fit, no re-zeroing).
    logs = custom_loop_step(model)(x, y)
    np.testing.assert_allclose(float(logs["loss"]), expected_loss, rtol=1e-5)
    expected = reference_measures(model, [(x, y)], input_shape=(12,),
                                  hidden_widths=[16, 16], num_classes=3)
    np.testing.assert_allclose(float(logs["gf_2"]), expected["gf_2"], rtol=1e-5)
    np.testing.assert_allclose(float(logs["egf_1"]), expected["egf_1"], rtol=1e-5)
    # train_on_batch after loading dense weights again.
    _dense_weights_into(model)
    expected_loss, _ = _effective_loss(model, x, y)
    loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    for layer in ke.prunable_layers(model):
        assert np.all(layer.kernel.numpy()[layer.mask.numpy() == 0] == 0.0)
    # fit after loading dense weights.
    _dense_weights_into(model)
    expected_loss, _ = _effective_loss(model, x, y)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], expected_loss,
                               rtol=1e-5)


def test_custom_loop_keeps_pruned_weights_out_of_training():
    x, y = _data(n=32, seed=9)
    model = _sparse_mlp(seed=3)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=_loss())
    _dense_weights_into(model)
    pruned = {l.name: l.kernel.numpy()[l.mask.numpy() == 0].copy()
              for l in ke.prunable_layers(model)}
    step = custom_loop_step(model)
    for _ in range(5):
        step(x, y)
    for layer in ke.prunable_layers(model):
        # The optimizer never touched them (masked gradients) and the
        # forward pass never used them (kernel * mask).
        np.testing.assert_array_equal(
            layer.kernel.numpy()[layer.mask.numpy() == 0], pruned[layer.name])
    expected_loss, _ = _effective_loss(model, x, y)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), expected_loss,
                               rtol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_steps_per_execution_measures_every_step_as_one_step_a_call(jit_compile):
    """compile(steps_per_execution=4): each call of the train function runs
    four steps, every one measured (gradient_flow_every=1), so History is
    the same as with one step a call."""
    x, y = _data(n=64, seed=11)
    if BACKEND == "torch":  # Keras's torch trainer takes one batch a call
        model = _sparse_mlp(seed=5)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=_loss(),
                      steps_per_execution=4, jit_compile=jit_compile)
        with pytest.raises(ValueError, match="steps_per_execution=4"):
            model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        return
    histories = []
    for steps in (1, 4):
        model = _sparse_mlp(seed=5)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=_loss(),
                      steps_per_execution=steps, jit_compile=jit_compile)
        histories.append(model.fit(x, y, batch_size=8, epochs=2, shuffle=False,
                                   verbose=0).history)
    for key in ke.GRADIENT_FLOW_METRICS + ("loss",):
        np.testing.assert_allclose(histories[1][key], histories[0][key],
                                   rtol=1e-5, err_msg=key)
    assert histories[0]["gf_1"][0] != histories[0]["gf_1"][1]

