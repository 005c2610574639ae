"""gf/EGF on every setting the grid builds (BatchNorm, L2, skip connections,
SReLU/PReLU, string losses, mixed precision): the training step's per-step
measure and the callback's fixed-batch measure both equal an independent
recomputation on a plain-Dense twin (tests/reference.py), and measuring
changes no model state."""

import keras
import numpy as np
import pytest

import keras_egf as ke
from keras_egf import callbacks as cb
from reference import reference_measures

SETTINGS = {
    "plain": {},
    "batch_norm": {"batch_norm": True},
    "l2": {"weight_decay": 0.05},
    "skip": {"skip_connections": True},
    "bn_l2_skip_srelu": {"batch_norm": True, "weight_decay": 0.05,
                         "skip_connections": True, "activation": "srelu"},
    "prelu": {"activation": "prelu"},
}


def _data(n=32, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype("float32"), rng.integers(0, k, n)


def _model(setting, seed=0, **options):
    kwargs = dict(input_shape=(12,), hidden_widths=[16, 16], num_classes=3,
                  seed=seed, **{k: v for k, v in setting.items()
                                if k != "weight_decay"})
    model = ke.build_mlp(weight_decay=setting.get("weight_decay", 0.0),
                         gradient_flow_every=1, **kwargs, **options)
    ke.prune(model, 0.7, seed=seed)
    if setting.get("batch_norm"):  # moving statistics unlike any batch's
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.7))
                layer.moving_variance.assign(
                    np.full(layer.moving_variance.shape, 3.0))
    return model, kwargs


def _state(model):
    return [v.numpy().copy() for v in
            model.non_trainable_variables + model.optimizer.variables]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_fixed_batch_and_per_step_measures_equal_twin(name):
    setting = SETTINGS[name]
    model, kwargs = _model(setting)
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    l2 = setting.get("weight_decay", 0.0)
    expected = reference_measures(model, batches, l2=l2, **kwargs)
    model.optimizer.build(model.trainable_variables)
    before = _state(model)
    fixed = cb.gradient_flow_on_batches(model, batches)
    for m in ke.GRADIENT_FLOW_METRICS:
        np.testing.assert_allclose(fixed[m], expected[m], rtol=2e-5, err_msg=m)
    # Measuring leaves BN moving statistics, SReLU/optimizer state alone.
    for a, b in zip(before, _state(model)):
        np.testing.assert_array_equal(a, b)
    # The training step on one batch: the same gradient (lr 0: weights stay).
    one = reference_measures(model, batches[:1], l2=l2, **kwargs)
    history = model.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0,
                        shuffle=False)
    for m in ke.GRADIENT_FLOW_METRICS:
        np.testing.assert_allclose(history.history[m][0], one[m], rtol=2e-5,
                                   err_msg=m)


def test_string_loss_in_callback_and_step():
    base, kwargs = _model(SETTINGS["batch_norm"])
    probs = keras.layers.Activation("softmax", name="softmax")(base.outputs[0])
    model = ke.MaskedModel(base.inputs, probs, gradient_flow_every=1)
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss="sparse_categorical_crossentropy")
    x, y = _data()
    expected = reference_measures(base, [(x, y)], probabilities=True, **kwargs)
    fixed = cb.gradient_flow_on_batches(model, [(x, y)])
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    for m in ke.GRADIENT_FLOW_METRICS:
        np.testing.assert_allclose(fixed[m], expected[m], rtol=2e-5, err_msg=m)
        np.testing.assert_allclose(history.history[m][0], expected[m],
                                   rtol=2e-5, err_msg=m)


def test_sample_weights_in_fixed_batches_weight_the_objective():
    model, kwargs = _model(SETTINGS["plain"])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = _data()
    weights = np.zeros(32, "float32")
    weights[:16] = 2.0  # Keras: sum(w * loss) / batch size
    weighted = cb.gradient_flow_on_batches(model, [(x, y, weights)])
    expected = reference_measures(model, [(x[:16], y[:16])], **kwargs)
    for m in ke.GRADIENT_FLOW_METRICS:
        np.testing.assert_allclose(weighted[m], expected[m], rtol=2e-5)


@pytest.mark.parametrize("name", ["plain", "batch_norm"])
def test_mixed_precision_measures_are_unscaled(name):
    x, y = _data(n=64)
    setting = SETTINGS[name]
    values = {}
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            model, _ = _model(setting, seed=3)
            model.compile(optimizer=keras.optimizers.SGD(0.0),
                          loss=keras.losses.SparseCategoricalCrossentropy(
                              from_logits=True))
            if policy == "mixed_float16":
                assert isinstance(model.optimizer,
                                  keras.optimizers.LossScaleOptimizer)
            history = model.fit(np.tile(x[:16], (4, 1)), np.tile(y[:16], 4),
                                batch_size=16, epochs=1, verbose=0,
                                shuffle=False)
            fixed = cb.gradient_flow_on_batches(model, [(x[:16], y[:16])])
        finally:
            keras.mixed_precision.set_global_policy("float32")
        values[policy] = (history.history, fixed)
    for m in ke.GRADIENT_FLOW_METRICS:
        reference = values["float32"][1][m]
        np.testing.assert_allclose(values["float32"][0][m][0], reference,
                                   rtol=1e-5)
        np.testing.assert_allclose(values["mixed_float16"][0][m][0], reference,
                                   rtol=1e-2, err_msg=f"per-step {m}")
        np.testing.assert_allclose(values["mixed_float16"][1][m], reference,
                                   rtol=1e-2, err_msg=f"fixed-batch {m}")


@pytest.mark.parametrize("jit_compile", [False, True])
def test_overflowed_steps_are_left_out_of_the_mean(jit_compile):
    # A loss scale of 2**24 overflows float16 until the optimizer has halved
    # it enough; those steps apply nothing and count for nothing in the
    # per-step mean (their inf/NaN would otherwise make it NaN). SGD(0):
    # every step that counts has the reference's gradient.
    x, y = _data(n=16)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, kwargs = _model(SETTINGS["plain"], seed=3)
        optimizer = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.0), initial_scale=2.0**24)
        model.compile(optimizer=optimizer, jit_compile=jit_compile,
                      loss=keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True))
        history = model.fit(np.tile(x, (16, 1)), np.tile(y, 16),
                            batch_size=16, epochs=1, verbose=0, shuffle=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    final_scale = float(optimizer.dynamic_scale.numpy())
    assert final_scale <= 2.0**19  # at least five steps overflowed
    assert final_scale >= 2.0**5  # and some did not
    expected = reference_measures(model, [(x, y)], **kwargs)
    for m in ke.GRADIENT_FLOW_METRICS:
        np.testing.assert_allclose(history.history[m][0], expected[m],
                                   rtol=1e-2, err_msg=m)
