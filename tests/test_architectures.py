"""keras_egf.architectures as a whole: the MLP builder (every activation,
plain and masked layers, its argument checks), then the architecture
registry, the CNN and the Wide ResNet (layouts, equal-capacity pairs, gf/EGF
against a plain-Conv2D twin)."""

import keras
import numpy as np
import pytest

import keras_egf as ke


@pytest.mark.parametrize("activation", list(ke.ACTIVATIONS))
def test_build_mlp_every_activation_trains(activation):
    model = ke.build_mlp((4, 4), [8, 8], 3, activation=activation,
                         batch_norm=True, skip_connections=True,
                         weight_decay=1e-3, seed=0)
    ke.prune(model, 0.5, seed=0)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(16, 4, 4)).astype("float32")
    history = model.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    assert np.isfinite(history.history["egf_2"][0])
    names = [l.name for l in model.layers]
    assert "skip_1" in names and "batch_norm_0" in names
    assert len(model.losses) == 3  # one L2 term per kernel


def test_plain_and_masked_layers():
    assert all(type(l) is keras.layers.Dense for l in
               ke.prunable_layers(ke.build_mlp((5,), [4], 2, masked=False)))
    assert all(isinstance(l, ke.MaskedDense) for l in
               ke.prunable_layers(ke.build_mlp((5,), [4], 2)))


@pytest.mark.parametrize("kwargs, named", [
    ({"hidden_widths": [0]}, r"hidden_widths=\[0\]"),
    ({"hidden_widths": []}, r"non-empty.*Received: hidden_widths=\[\]"),
    ({"activation": "tanhh"}, "'tanhh'"),
    ({"hidden_widths": [4, 5], "skip_connections": True}, "hidden_widths"),
    ({"weight_decay": -1.0}, "weight_decay=-1.0"),
])
def test_bad_arguments_named(kwargs, named):
    args = {"input_shape": (5,), "hidden_widths": [4], "num_classes": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=named):
        ke.build_mlp(**args)


# --- convnets: the architecture registry, CNN and Wide ResNet -------------

import tensorflow_datasets as tfds

from keras_egf import architectures
from keras_egf import callbacks as cb
from keras_egf import data
from reference import reference_measures


def test_registry_names_and_unknown_architecture():
    assert architectures.all_architecture_names() == ["cnn", "mlp", "wrn"]
    with pytest.raises(ValueError, match=r"'resnet'.*\['cnn', 'mlp', 'wrn'\]"):
        architectures.get_architecture("resnet")
    # Each builder makes exactly the layers its kernel_shapes names.
    for name, widths, shape in (("mlp", [8, 8], (6,)),
                                ("cnn", [4, 8, 8, 16, 16], (12, 12, 1)),
                                ("wrn", [16, 32, 64, 128], (8, 8, 3))):
        arch = architectures.get_architecture(name)
        model = arch.build(shape, 5, widths, activation="relu", masked=True,
                           wrn_depth=10)
        expected = arch.kernel_shapes(shape, widths, 5, wrn_depth=10)
        assert {l.name: tuple(l.kernel.shape) for l in ke.prunable_layers(model)} \
            == dict(expected), name


def test_wrn_16_4_layout_and_names():
    model = architectures.build_wrn((32, 32, 3), 10, depth=16, masked=False)
    names = [l.name for l in ke.prunable_layers(model)]
    assert len(names) == 1 + 3 * 2 * 2 + 3 + 1  # stem, 12 convs, 3 shortcuts, output
    assert names[0] == "stem" and names[-1] == "output"
    assert {n for n in names if n.endswith("shortcut")} == {
        "group0_block0_shortcut", "group1_block0_shortcut", "group2_block0_shortcut"}
    shapes = {l.name: tuple(l.kernel.shape) for l in ke.prunable_layers(model)}
    assert shapes["group2_block1_conv2"] == (3, 3, 256, 256)
    assert shapes["group1_block0_shortcut"] == (1, 1, 64, 128)
    assert architectures.wrn_widths(28, 10) == [16, 160, 320, 640]
    with pytest.raises(ValueError, match="`depth` must be 6n .*Received: depth=15"):
        architectures.wrn_widths(15, 4)


@pytest.mark.parametrize("arch, widths, multiplier, kwargs", [
    ("cnn", [8, 16, 16, 32, 32], 2.0, {"batch_norm": True}),
    ("wrn", architectures.wrn_widths(16, 4), 1.25, {"wrn_depth": 16}),
])
def test_convnet_pair_trains_on_mock_cifar10_with_equal_capacity(arch, widths,
                                                                 multiplier, kwargs):
    with tfds.testing.mock_data(num_examples=16):
        ds = data.make_datasets("cifar10", batch_size=4, flatten=False, seed=0)
        batches = list(ds.train.take(2))
    pair = ke.same_capacity_pair(ds.input_shape, widths, ds.num_classes, multiplier,
                                 arch=arch, seed=0, **kwargs)
    dense_counts, sparse_counts = ke.active_weights(pair.dense), ke.active_weights(pair.sparse)
    assert dense_counts == sparse_counts  # every layer, exactly
    assert set(dense_counts) == {p.name for p in pair.plan}
    for p in pair.plan:
        assert p.active == int(np.prod(p.dense_shape))
        assert np.prod(p.sparse_shape) > np.prod(p.dense_shape) or p.name == "stem" \
            or p.name.startswith("conv_0")
    for model in (pair.sparse, pair.dense):
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        history = model.fit(tf_dataset(batches), epochs=1, verbose=0)
        assert np.isfinite(history.history["egf_2"][0])
    for layer in ke.prunable_layers(pair.sparse):
        pruned = layer.mask.numpy() == 0
        assert pruned.any() or layer.name in ("stem", "conv_0")
        assert np.all(layer.kernel.numpy()[pruned] == 0.0), layer.name
    assert ke.active_weights(pair.sparse) == dense_counts  # still, after training


def tf_dataset(batches):
    import tensorflow as tf

    xs = np.concatenate([b[0].numpy() for b in batches])
    ys = np.concatenate([b[1].numpy() for b in batches])
    return tf.data.Dataset.from_tensor_slices((xs, ys)).batch(4)


def test_sparse_init_std_follows_dense_conv_fan_in():
    pair = ke.same_capacity_pair((16, 16, 3), [32, 64, 64, 64, 64], 10, 3.0,
                                 arch="cnn", seed=0)
    for name in ("conv_1", "conv_3"):
        dense = pair.dense.get_layer(name).kernel.numpy()
        layer = pair.sparse.get_layer(name)
        active = layer.kernel.numpy()[layer.mask.numpy() == 1]
        fan_in = 3 * 3 * dense.shape[2]  # the dense twin's, not the sparse one's
        assert abs(active.std() / np.sqrt(2.0 / fan_in) - 1) < 0.05, name
        assert abs(dense.std() / np.sqrt(2.0 / fan_in) - 1) < 0.05, name


@pytest.mark.parametrize("arch, widths, kwargs", [
    ("cnn", [4, 8, 8, 16, 16], {}),
    ("wrn", [16, 16, 32, 64], {"wrn_depth": 10}),  # residual adds, 1x1 shortcuts
])
def test_dense_equivalent_of_a_sparse_convnet_is_exact(arch, widths, kwargs):
    pair = ke.same_capacity_pair((12, 12, 3), widths, 3, 2.0, arch=arch, seed=1,
                                 **kwargs)
    twin = ke.dense_equivalent(pair.sparse)
    assert twin.exact
    assert ke.active_weights(twin.model) == ke.active_weights(pair.dense)
    shapes = lambda m: {l.name: tuple(l.kernel.shape) for l in ke.prunable_layers(m)}
    assert shapes(twin.model) == shapes(pair.dense)


def test_masked_convnet_measures_equal_plain_conv2d_twin():
    kwargs = dict(input_shape=(8, 8, 2), num_classes=3, widths=[4, 6, 6, 8, 5],
                  batch_norm=True, seed=0)
    model = architectures.build_cnn(masked=True, gradient_flow_every=1, **kwargs)
    ke.prune(model, 0.6, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, 16)
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    expected = reference_measures(model, batches, builder=architectures.build_cnn,
                                  **kwargs)
    assert expected["gf_1"] > 1.5 * len(ke.prunable_layers(model)) * expected["egf_1"]
    fixed = cb.gradient_flow_on_batches(model, batches)
    for m in ke.GRADIENT_FLOW_METRICS:
        np.testing.assert_allclose(fixed[m], expected[m], rtol=1e-5, err_msg=m)
    step = reference_measures(model, batches[:1], builder=architectures.build_cnn,
                              **kwargs)
    logs = model.train_on_batch(*batches[0], return_dict=True)
    for m in ke.GRADIENT_FLOW_METRICS:
        np.testing.assert_allclose(logs[m], step[m], rtol=1e-5, err_msg=m)
    assert set(fixed["layers"]) == {f"conv_{i}" for i in range(4)} | {"head", "output"}


@pytest.mark.parametrize("build, kwargs", [
    ("mlp", dict(input_shape=(20,), hidden_widths=[12, 12], skip_connections=True)),
    ("mlp", dict(input_shape=(20,), hidden_widths=[9])),
    ("cnn", dict(input_shape=(8, 8, 2), widths=[4, 6, 6, 8, 5])),
])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_no_bias_feeds_batch_norm_and_no_weight_gets_only_rounding_noise(
        build, kwargs, batch_norm):
    """BatchNorm removes the batch mean, so a bias before it has a zero
    gradient in exact arithmetic (float32 rounding noise in practice, which
    Adam/RMSProp scale up to +-lr steps): layers that feed a BatchNorm have
    none; the others, and the logits, keep theirs."""
    import tensorflow as tf

    builder = architectures.build_mlp if build == "mlp" else architectures.build_cnn
    model = builder(num_classes=3, batch_norm=batch_norm, seed=0, **kwargs)
    biased = {l.name for l in ke.prunable_layers(model) if l.bias is not None}
    prunable = [l.name for l in ke.prunable_layers(model)]
    assert biased == (set(prunable) if not batch_norm else {prunable[-1]})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32,) + kwargs["input_shape"]).astype("float32")
    y = rng.integers(0, 3, 32)
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for v, g in zip(model.trainable_variables, grads):
        # a bias before BatchNorm would show max |g| ~ 1e-9 here
        assert float(np.max(np.abs(g))) > 1e-5, v.path
