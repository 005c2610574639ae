"""keras_egf.gradient_recorder: the gradient a training step records is the
effective-kernel gradient (a plain-Dense twin's, at pruned positions too),
without the loss scale of mixed precision. RigL's use of it is in
test_pruning_dynamic.py."""

import keras
import numpy as np

import keras_egf as ke
from keras_egf import pruning
from keras_egf.gradient_recorder import GradientRecorder
from reference import effective_twin, twin_kernel_gradients


def _model(setting=None, seed=0):
    """A pruned MLP (80 % sparse) and the arguments that build its twin."""
    kwargs = dict(input_shape=(12,), hidden_widths=[16, 16], num_classes=3, seed=seed)
    model = ke.build_mlp(weight_decay=(setting or {}).get("weight_decay", 0.0), **kwargs)
    ke.prune(model, 0.8, seed=seed)
    return model, kwargs


def _data(n):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 12)).astype("float32"), rng.integers(0, 3, n)


def test_stored_gradient_is_the_effective_kernel_gradient_at_pruned_positions():
    model, kwargs = _model({"weight_decay": 0.05}, seed=1)
    x, y = _data(16)
    model.compile(keras.optimizers.SGD(0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    twin = effective_twin(model, **kwargs)
    expected = twin_kernel_gradients(twin, [(x, y)], l2=0.05)
    recorder = GradientRecorder()
    model.record_kernel_gradients(recorder)
    recorder.request()
    model.train_on_batch(x, y)
    stored = recorder.gradients()
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
            recorder = GradientRecorder()
            model.record_kernel_gradients(recorder)
            recorder.request()
            model.train_on_batch(x, y)
            stored[policy] = recorder.gradients()
        finally:
            keras.mixed_precision.set_global_policy("float32")
    for name, g in stored["float32"].items():  # the loss scale (32768) divided out
        np.testing.assert_allclose(stored["mixed_float16"][name], g, rtol=2e-2, atol=2e-3)
