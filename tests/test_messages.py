"""Issue 27 point 9: errors name the argument and the value they refuse
(the grid file's are in test_grid.py)."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_egf as ke
from keras_egf import layers as layers_lib
from keras_egf.callbacks import EGFCallback
from keras_egf.config import ComparisonConfig
from keras_egf.pruning.distributions import check_sparsity
from keras_egf.pruning.schedules import ConstantSparsity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _binary(module, *args):
    return subprocess.run([sys.executable, "-m", f"trainers.{module}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.parametrize("sparsity, kind", [
    ("0.5", "str"), (False, "bool"), (True, "bool"), (None, "NoneType"),
    (np.bool_(False), "bool"), ([0.5], "list")])
def test_a_sparsity_that_is_no_real_number_is_refused(sparsity, kind):
    """'0.5' and False were taken as 0.5 and 0.0."""
    with pytest.raises(ValueError) as e:
        check_sparsity(sparsity)
    assert str(e.value) == (f"`sparsity` must be a number in [0, 1), not {kind}. "
                            f"Received: sparsity={sparsity!r}")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=re.escape(f"Received: sparsity={sparsity!r}")):
        ke.prune(model, sparsity)


def test_real_numbers_stay_accepted_as_sparsities():
    for value in (0.5, 0, np.float32(0.25), np.int64(0), np.array(0.75)):
        assert check_sparsity(value) == float(value)
    with pytest.raises(ValueError, match="`target_sparsity` must be a number in "
                       r"\[0, 1\), not str. Received: target_sparsity='0.5'"):
        ConstantSparsity("0.5", begin_step=0)


def test_same_capacity_pair_names_num_classes():
    """num_classes=0 said 'Fans must be positive. Received: fan_in=8, fan_out=0'."""
    with pytest.raises(ValueError) as e:
        ke.same_capacity_pair(4, [8], 0, 2.0)
    assert str(e.value) == ("`num_classes` must be an integer >= 2. "
                            "Received: num_classes=0")


def test_egf_callback_on_a_model_without_prunable_layers_names_the_model():
    """It said 'Received an empty list of gradients: grads=[]' at the first
    evaluation epoch."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Activation("relu")],
                             name="no_kernels")
    model.compile("sgd", "mse")
    x = np.ones((8, 4), "float32")
    egf = EGFCallback((x, x), num_points=1)
    with pytest.raises(ValueError) as e:
        model.fit(x, x, epochs=1, verbose=0, callbacks=[egf])
    assert str(e.value).startswith("EGFCallback: model 'no_kernels' has no "
                                   "prunable layer"), str(e.value)
    assert "Received: model='no_kernels' with layers ['activation']" in str(e.value)
    assert egf.points == []


def test_a_ragged_mask_names_the_layer_and_the_argument():
    """It gave NumPy's 'setting an array element with a sequence ...
    inhomogeneous shape'."""
    layer = ke.MaskedDense(3, name="head")
    layer.build((None, 2))
    with pytest.raises(ValueError) as e:
        layer.set_mask([[1, 0, 1], [1, 0]])
    assert str(e.value) == (
        "Mask for layer 'head' must be an array of the weight's shape (2, 3); "
        "it is ragged (rows of lengths [3, 2]). Received: mask=[[1, 0, 1], [1, 0]]")
    weight = keras.Variable(np.ones((2, 2), "float32"))
    mask = keras.Variable(np.ones((2, 2), "float32"), trainable=False)
    with pytest.raises(ValueError) as e:
        layers_lib.set_weight_mask("emb/embeddings", weight, mask, [[1], [1, 0]])
    assert str(e.value).startswith(
        "Mask for 'emb/embeddings' must be an array of the weight's shape (2, 2); "
        "it is ragged (rows of lengths [1, 2]). Received: mask=")


def test_the_seed_flag_is_named_with_its_range():
    """--seed=-1 failed in training with NumPy's 'Seed must be between 0 and
    2**32 - 1', no flag named."""
    proc = _binary("train", "--seed=-1", "--output_dir=unused_never_created")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("keras-egf-train: error: --seed: `seed` must be an integer in "
            "[0, 2**32 - 1] (NumPy's seed range). Received: seed=-1") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(ROOT, "unused_never_created"))
    with pytest.raises(ValueError, match=r"^`seed` must be an integer in .*"
                       "Received: seed=4294967296$"):
        ComparisonConfig(seed=2**32).validate()
    assert ComparisonConfig(seed=2**32 - 1).validate().seed == 2**32 - 1


def test_a_stray_positional_argument_is_one_line_naming_it(tmp_path):
    """It got absl's USAGE line and the whole flag help."""
    proc = _binary("report", "runs/smoke", f"--sweep_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if ": error: " in l]
    assert lines == ["report.py: error: unexpected argument 'runs/smoke': the "
                     "binary takes flags only (--name=value; --help lists them)"]
    assert "USAGE" not in proc.stdout + proc.stderr
    assert "--min_pairs" not in proc.stdout + proc.stderr  # no flag help
