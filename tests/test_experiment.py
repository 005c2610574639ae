"""keras_egf.experiment's public building blocks: the pipelines of a
config, the fixed EGF batch set, the pair and the models a config trains."""

import types

import numpy as np
import pytest

from keras_egf import experiment
from keras_egf.config import ComparisonConfig


def _config(**kw):
    base = dict(dataset="mnist5k", depth=1, dense_width=6, sparse_width_multiplier=2,
                epochs=1, egf_points=1, egf_batches=2, batch_size=128)
    base.update(kw)
    return ComparisonConfig(**base).validate()


@pytest.mark.parametrize("models, names", [
    ("both", ["sparse", "dense"]), ("sparse", ["sparse"]), ("dense", ["dense"])])
def test_models_of_gives_the_configs_models_sparse_first(models, names):
    pair = types.SimpleNamespace(sparse="S", dense="D")
    got = experiment.models_of(_config(models=models), pair)
    assert [name for name, _ in got] == names
    assert [model for _, model in got] == [n[0].upper() for n in names]


@pytest.mark.parametrize("split", ["train", "test"])
def test_fixed_egf_batches_are_the_first_batches_of_a_fresh_pipeline(split):
    config = _config(egf_data=split)
    batches = experiment.fixed_egf_batches(config)
    assert len(batches) == config.egf_batches
    again = experiment.fixed_egf_batches(config)
    for (x, y), (x2, y2) in zip(batches, again):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))
        np.testing.assert_array_equal(np.asarray(y), np.asarray(y2))
    source = getattr(experiment.datasets_for(config), split)
    first = next(iter(source))
    np.testing.assert_array_equal(np.asarray(batches[0][0]), np.asarray(first[0]))


def test_datasets_and_pair_follow_the_config():
    config = _config(dense_width=5)
    ds = experiment.datasets_for(config)
    assert len(ds.input_shape) == 1  # flattened for an MLP
    pair = experiment.build_pair(config, ds)
    assert pair.dense.get_layer("hidden_0").units == 5
    assert pair.sparse.get_layer("hidden_0").units == 10
    experiment.compile_model(pair.dense, config)
    assert float(pair.dense.optimizer.learning_rate) == pytest.approx(config.learning_rate)
    assert experiment.training_datasets(config).num_train == ds.num_train
