"""benchmarks/tutorial.py: TFMOT's "Pruning in Keras" tutorial with
keras-egf and with TFMOT (tf-keras subprocess), quick mode on a slice of
the bundled MNIST subset."""

import os
import shutil

import keras
import numpy as np
import pytest

from benchmarks import tutorial
from keras_egf import masking
from keras_egf.pruning import masked_layers


def test_schedule_settings_end_on_end_step():
    assert tutorial.end_step(4000, 2) == 58  # the bundled subset, as the tutorial
    assert tutorial.end_step(60000, 2) == 844  # the tutorial's MNIST
    for end in (58, 16, 29, 844, 7):
        frequency = tutorial.pruning_frequency(end)
        assert end % frequency == 0 and (end // frequency >= 8 or frequency == 1)
    assert tutorial.pruning_frequency(58) == 2
    # TFMOT keeps max(1, round(n * (1 - s))) weights, in float32.
    assert [tutorial.kept_target(n) for n in (108, 20280, 3)] == [22, 4056, 1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    q = tutorial.QUICK
    data = tutorial.load_data(q["n_train"], q["n_test"])
    workdir = str(tmp_path_factory.mktemp("tutorial"))
    results, models = tutorial.run_keras_egf(
        data, workdir, q["base_epochs"], q["prune_epochs"], return_models=True)
    return data, results, models, workdir


def test_every_pruned_layer_reaches_the_final_sparsity(quick_run):
    _, results, models, _ = quick_run
    end = tutorial.end_step(tutorial.QUICK["n_train"], tutorial.QUICK["prune_epochs"])
    assert models["callback"].updates[-1] == (end, pytest.approx(0.8))
    layers = masked_layers(models["pruned"])
    assert len(layers) == 2 and isinstance(layers[0], keras.layers.Conv2D) \
        and isinstance(layers[1], keras.layers.Dense)
    for layer in layers:
        mask = np.asarray(layer.mask.numpy())
        assert int(mask.sum()) == tutorial.kept_target(mask.size), layer.name
    assert set(results["layers"]) == {"Conv2D", "Dense"}
    for layer in results["layers"].values():  # the stripped kernels
        assert layer["kept"] == tutorial.kept_target(layer["size"])


def test_stripped_model_is_plain_and_predicts_like_the_pruned_one(quick_run):
    (_, _, x_test, _), results, models, _ = quick_run
    stripped, pruned = models["stripped"], models["pruned"]
    assert type(stripped) is keras.Sequential
    assert not any(masking.is_masked(l) for l in stripped.layers)
    assert len(stripped.weights) == len(models["baseline"].weights) == 4
    assert not any("mask" in v.path for v in stripped.weights)
    np.testing.assert_allclose(stripped.predict(x_test, verbose=0),
                               pruned.predict(x_test, verbose=0), rtol=1e-5, atol=1e-5)
    assert results["accuracy"]["pruned_tflite"] == pytest.approx(
        results["accuracy"]["pruned"], abs=0.01)


def test_pruned_files_are_smaller(quick_run):
    _, results, _, _ = quick_run
    sizes = results["sizes"]
    assert sizes["pruned_h5"] < sizes["baseline_h5"] / 2
    assert sizes["pruned_keras"] < sizes["baseline_keras"] / 2
    assert sizes["pruned_tflite"] < sizes["baseline_tflite"] / 2
    assert sizes["pruned_quantized_tflite"] < sizes["pruned_tflite"]
    text = tutorial.report(results, results)
    assert "| Dense | 20280 | 4056 | 4056 | 80.00 % | 4056 | 80.00 % |" in text
    assert "| baseline .h5 / pruned .h5 |" in text
    assert "TFMOT (tf-keras) |" in tutorial.report(results)


def test_tfmot_side_reaches_the_same_sparsity_and_ratios(quick_run, tmp_path):
    pytest.importorskip("tensorflow_model_optimization")
    pytest.importorskip("tf_keras")
    data, ours, _, workdir = quick_run
    shutil.copy(os.path.join(workdir, "initial_weights.npz"), tmp_path)
    q = tutorial.QUICK
    theirs = tutorial.run_tfmot(data, str(tmp_path), q["base_epochs"], q["prune_epochs"])
    assert theirs["keras"].startswith("2.")  # tf-keras
    assert {k: v["kept"] for k, v in theirs["layers"].items()} == {
        k: v["kept"] for k, v in ours["layers"].items()}
    # keras-egf stores pruned weights as +0.0 (TFMOT's w * 0 keeps -0.0 for
    # about half), so its float files compress at least as well: within 15 %
    # below TFMOT's ratio, or above it.
    for label, ratio in tutorial.ratios(theirs["sizes"]).items():
        assert tutorial.ratios(ours["sizes"])[label] >= 0.85 * ratio, label
    assert "| Conv2D | 108 | 22 | 22 |" in tutorial.report(ours, theirs)
