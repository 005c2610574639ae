"""Packed training, keras_egf.packing as a whole (run, trainer, outputs,
grouping): a member of a pack ends with the weights, History, gf/EGF points
and test metrics of the same point trained alone; a diverging member is
frozen; which points share a pack."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_egf import experiment
from keras_egf import packing
from keras_egf.config import ComparisonConfig


def _config(**kw):
    base = dict(dataset="mnist5k", depth=2, dense_width=12, sparse_width_multiplier=2,
                epochs=2, egf_points=2, egf_batches=2, batch_size=256,
                gradient_flow_every=3, optimizer="adam", learning_rate=0.01)
    base.update(kw)
    return ComparisonConfig(**base).validate()


def _alone(config, tmp_path):
    """The unpacked run, as run_comparison does it, keeping the models."""
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    ds = experiment.datasets_for(config)
    pair = experiment.build_pair(config, ds)
    results = {name: experiment.train_one(name, getattr(pair, name), config,
                                          str(tmp_path), 0)
               for name in ("sparse", "dense")}
    return pair, results


# Adam and RMSProp with BatchNorm are where a bias before BatchNorm (zero
# gradient in exact arithmetic, float noise in practice, which they scale up
# to +-lr steps) made the pack and the point trained alone drift apart; the
# MLP has no such bias (architectures.common.bias_before_norm), so they agree
# like every other setting.
SETTINGS = {
    # sigmoid(0) = 0.5: padded units are not 0, so their kernel rows get a
    # gradient, which the structural mask must keep out of gf.
    "adam_l2_sigmoid": dict(optimizer="adam", regularizers=("l2",),
                            activation="sigmoid"),
    "sgd_bn_l2_elu": dict(optimizer="sgd", regularizers=("bn", "l2"),
                          activation="elu", learning_rate=0.1),
    "momentum_skip_prelu": dict(optimizer="momentum", regularizers=("sc",),
                                activation="prelu", learning_rate=0.05),
    "adam_bn_relu": dict(optimizer="adam", regularizers=("bn",), activation="relu"),
    "rmsprop_bn_swish": dict(optimizer="rmsprop", regularizers=("bn",),
                             activation="swish", learning_rate=0.005),
    "adagrad_swish_da": dict(optimizer="adagrad", activation="swish",
                             regularizers=("da",), learning_rate=0.05),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_members_equal_the_points_trained_alone(name, tmp_path):
    setting = dict(SETTINGS[name])
    lr = setting.pop("learning_rate", 0.01)
    configs = [_config(seed=0, dense_width=12, learning_rate=lr, **setting),
               _config(seed=1, dense_width=8, learning_rate=lr / 3, **setting)]
    trainers = []
    dirs = [str(tmp_path / f"p{i}") for i in range(2)]
    packed = packing.run_packed(configs, dirs, trainer_out=trainers)
    trainer = trainers[0]
    assert len(trainer.members) == 4  # sparse and dense of each point
    for p, config in enumerate(configs):
        pair, alone = _alone(config, tmp_path / f"alone{p}")
        for member in (m for m in trainer.members if m.point == p):
            k = member.index
            model = getattr(pair, member.name)
            got = packing.member_weights(trainer.packed, member, k)
            for layer in model.layers:
                if not layer.weights:
                    continue
                expected = [w.numpy() for w in layer.weights][:len(got[layer.name])]
                if hasattr(layer, "mask"):
                    expected[0] = expected[0] * layer.mask.numpy()
                for j, (a, b) in enumerate(zip(got[layer.name], expected)):
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-5,
                                               err_msg=f"{member.name} {layer.name} {j}")
            mine, theirs = packed[p]["models"][member.name], alone[member.name]
            assert mine.keys() == theirs.keys() | {"eval_time_s"} or \
                mine.keys() == theirs.keys()
            assert mine["history"].keys() == theirs["history"].keys()
            for key, values in theirs["history"].items():
                np.testing.assert_allclose(mine["history"][key], values, rtol=1e-5,
                                           err_msg=f"{member.name} {key}")
            for a, b in zip(mine["egf_points"], theirs["egf_points"]):
                assert a["epoch"] == b["epoch"]
                for m in ("gf_1", "gf_2", "egf_1", "egf_2"):
                    np.testing.assert_allclose(a[m], b[m], rtol=1e-5, err_msg=m)
                for layer, norms in b["layers"].items():
                    np.testing.assert_allclose(a["layers"][layer]["egf_2"],
                                               norms["egf_2"], rtol=1e-5)
            np.testing.assert_allclose(mine["test_loss"], theirs["test_loss"], rtol=1e-5)
            assert mine["test_accuracy"] == theirs["test_accuracy"]
            for key in ("active_weights", "widths", "mask_sha256"):
                assert mine[key] == theirs[key], key
        # Written like an unpacked run.
        written = json.loads((tmp_path / f"p{p}" / "results.json").read_text())
        assert written["config"] == config.to_dict()
        assert set(written["models"]) == {"sparse", "dense"}
        for name in ("sparse", "dense"):  # the same TensorBoard scalars
            for run in ("train", "egf"):
                mine = _scalars(tmp_path / f"p{p}" / "tensorboard" / name / run)
                theirs = _scalars(tmp_path / f"alone{p}" / "tensorboard" / name / run)
                assert mine.keys() == theirs.keys() and mine, (name, run)
                for tag, values in theirs.items():
                    assert [s for s, _ in mine[tag]] == [s for s, _ in values], tag
                    np.testing.assert_allclose([v for _, v in mine[tag]],
                                               [v for _, v in values], rtol=1e-5,
                                               err_msg=tag)


def _scalars(log_dir):
    """{tag: [(step, value)]} of a TensorBoard run's scalar summaries."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events]
            for tag in acc.Tags()["tensors"]
            for events in [acc.Tensors(tag)]
            if events[0].tensor_proto.dtype != tf.string.as_datatype_enum}


def test_a_diverging_member_is_frozen_and_the_others_go_on(tmp_path):
    configs = [_config(optimizer="sgd", learning_rate=1e30, seed=0),
               _config(optimizer="sgd", learning_rate=0.5, seed=0)]
    results = packing.run_packed(configs, [str(tmp_path / "a"), str(tmp_path / "b")])
    for name in ("sparse", "dense"):
        bad, good = results[0]["models"][name], results[1]["models"][name]
        assert bad["diverged"] and bad["diverged_epoch"] == 0
        assert bad["diverged_reason"].startswith("loss")
        assert bad["test_accuracy"] is None and bad["epochs_run"] == 1
        assert not good["diverged"] and good["epochs_run"] == 2
        assert 0.3 < good["test_accuracy"] <= 1.0


def test_shared_rate_steps_and_a_frozen_member(tmp_path):
    """With one shared rate the optimizer runs at it (the plain step); the
    scaling step, used once a member has diverged, takes the same step for
    the members still training and keeps a frozen member's weights."""
    configs = [_config(seed=0, dense_width=12), _config(seed=1, dense_width=8)]
    members = packing.build_members(configs)
    trainer = packing.PackedTrainer(members)
    assert trainer.shared_rate
    x, y = next(iter(trainer._stacked([m.datasets.train for m in members])))
    start = [v.numpy() for v in trainer.packed.trainable_variables]
    state = [v.numpy() for v in trainer.optimizer.variables]

    def step(fn):  # from the same weights and optimizer state
        for v, value in zip(trainer.packed.trainable_variables + trainer.optimizer.variables,
                            start + state):
            v.assign(value)
        fn(x, y, tf.constant(True))
        return [v.numpy() for v in trainer.packed.trainable_variables]

    plain, scaled = step(trainer._plain_step), step(trainer._step)
    for a, b, s0 in zip(plain, scaled, start):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert np.abs(a - s0).max() > 0
    trainer.alive.assign([False, True, True, True])
    frozen = step(trainer._step)
    for a, b, s0 in zip(frozen, plain, start):
        np.testing.assert_array_equal(a[0], s0[0])  # member 0 kept its weights
        np.testing.assert_allclose(a[1:], b[1:], rtol=1e-6, atol=1e-7)
    trainer.train()  # whole epochs with member 0 frozen from the start
    for v, s0 in zip(trainer.packed.trainable_variables, start):
        np.testing.assert_array_equal(v.numpy()[0], s0[0])
        assert np.abs(v.numpy()[1:] - s0[1:]).max() > 0
    assert "loss" not in members[0].history and len(members[1].history["loss"]) == 2


def test_grouping_and_unsupported_settings():
    configs = {i: _config(seed=i % 2, dense_width=8 + i, optimizer=("adam" if i < 4 else "sgd"))
               for i in range(6)}
    configs[6] = _config(activation="srelu")  # not packable: a pack of its own
    configs[7] = _config(optimizer="sgd", dense_width=20)
    groups = packing.group_points(list(configs), configs.get, 3)
    assert groups == [[0, 1, 2], [3], [4, 5, 7], [6]]
    with pytest.raises(ValueError, match="activation='srelu'"):
        packing.check_packable(_config(activation="srelu"))
    with pytest.raises(ValueError, match="differ only in"):
        packing.run_packed([_config(), _config(optimizer="sgd")], ["/tmp/a", "/tmp/b"])
    with pytest.raises(ValueError, match="size=0"):
        packing.group_points([], configs.get, 0)
