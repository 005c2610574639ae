import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from keras_egf import experiment
from keras_egf.pruning import dynamic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=mnist5k", "--dense_width=12", "--sparse_width_multiplier=2",
        "--epochs=2", "--egf_points=2", "--egf_batches=2", "--batch_size=256",
        "--verbose=0"]


def _tiny_config(**kw):
    base = dict(dataset="mnist5k", dense_width=12, sparse_width_multiplier=2,
                epochs=2, egf_points=2, egf_batches=2, batch_size=256, seed=3)
    base.update(kw)
    return experiment.ComparisonConfig(**base)


def _train(args, timeout=300, cwd=ROOT, **env_vars):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, **env_vars)
    return subprocess.run([sys.executable, "-m", "trainers.train", *args],
                          cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = _train(["--flagfile=configs/quickstart.flags", *TINY,
                   "--regularizers=bn,l2", f"--output_dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_binary_end_to_end_writes_results_and_png(finished_run):
    out, proc = finished_run
    results = json.loads((out / "results.json").read_text())
    sparse, dense = results["models"]["sparse"], results["models"]["dense"]
    assert sparse["active_weights"] == dense["active_weights"]
    assert list(sparse["active_weights"]) == ["hidden_0", "output"]
    assert sparse["active_weights"]["hidden_0"] == 784 * 12
    assert sparse["widths"] == [24, 10] and dense["widths"] == [12, 10]
    for r in (sparse, dense):
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["diverged"] is False
        assert [p["epoch"] for p in r["egf_points"]] == [0, 1]
        assert set(r["average"]) == {"gf_1", "gf_2", "egf_1", "egf_2"}
        # History: the callback's fixed-batch values, at the EGF points
        assert [r["history"]["fixed_batch_egf_2"]] == [
            [p["egf_2"] for p in r["egf_points"]]]
    assert results["config"]["regularizers"] == ["bn", "l2"]
    assert "tensorflow" in results["versions"]
    png = out / "comparison.png"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "SC-SDC mnist5k: sparse: test acc" in proc.stdout


def test_binary_runs_on_jax(tmp_path):
    """keras-egf-train under KERAS_BACKEND=jax (its data pipeline stays on
    tf.data): the pair is matched, gf/EGF are finite, and results.json
    names the backend."""
    pytest.importorskip("jax")
    proc = _train(["--flagfile=configs/quickstart.flags", *TINY,
                   f"--output_dir={tmp_path}"], KERAS_BACKEND="jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["versions"]["keras_backend"] == "jax"
    sparse, dense = results["models"]["sparse"], results["models"]["dense"]
    assert sparse["active_weights"] == dense["active_weights"]
    for r in (sparse, dense):
        assert all(np.isfinite(v) and v > 0 for v in r["average"].values())
        assert len(r["history"]["egf_2"]) == 2 and np.isfinite(r["history"]["egf_2"]).all()


def test_tensorboard_serves_egf_series(finished_run, free_port):
    out, _ = finished_run
    port = free_port
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir",
         str(out / "tensorboard"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        tags = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/data/plugin/scalars/tags", timeout=5) as r:
                    tags = json.load(r)
                if tags:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert tags, "tensorboard did not answer"
        for model in ("sparse", "dense"):
            assert "egf/egf_2" in tags[f"{model}/egf"]
            assert "epoch_egf_1" in tags[f"{model}/train"]
            for run, tag, n in ((f"{model}/egf", "egf/egf_2", 2),
                                (f"{model}/egf", "egf/gf_1", 2),
                                (f"{model}/train", "epoch_gf_2", 2)):
                q = urllib.parse.urlencode({"run": run, "tag": tag})
                with urllib.request.urlopen(f"{base}/data/plugin/scalars/scalars?{q}", timeout=10) as r:
                    series = json.load(r)
                assert [s[1] for s in series] == list(range(n)), (run, tag)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("flag, value", [
    ("optimizer", "adamax"), ("dataset", "mnist"), ("activation", "tanh"),
    ("regularizers", "dropout"), ("learning_rate", "0"), ("learning_rate", "nan"),
    ("depth", "0"), ("egf_points", "9"),
])
def test_invalid_flags_exit_with_one_line_naming_them(flag, value):
    proc = _train([*TINY, f"--{flag}={value}", "--output_dir=/tmp/never"])
    assert proc.returncode != 0
    # (TensorFlow's C++ start-up lines may precede it on stderr.)
    named = [l for l in proc.stderr.splitlines() if f"--{flag}" in l and value in l]
    assert len(named) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _train([*TINY, f"--output_dir={blocker}/sub"])
    assert proc.returncode != 0
    assert "output_dir=" in proc.stderr and str(blocker) in proc.stderr


def test_same_seed_same_masks_and_metrics(tmp_path):
    a = experiment.run_comparison(_tiny_config(), str(tmp_path / "a"), verbose=0,
                                  plot=False)
    b = experiment.run_comparison(_tiny_config(), str(tmp_path / "b"), verbose=0,
                                  plot=False)
    for name in ("sparse", "dense"):
        ra, rb = a["models"][name], b["models"][name]
        assert ra["mask_sha256"] == rb["mask_sha256"]
        for key in ("test_loss", "test_accuracy", "history", "egf_points", "average"):
            assert ra[key] == rb[key], (name, key)
    c = experiment.run_comparison(_tiny_config(seed=4), str(tmp_path / "c"),
                                  verbose=0, plot=False)
    assert c["models"]["sparse"]["mask_sha256"] != a["models"]["sparse"]["mask_sha256"]


def test_divergence_is_recorded_not_crashed(tmp_path):
    out = tmp_path / "nan"
    results = experiment.run_comparison(
        _tiny_config(optimizer="sgd", learning_rate=1e3, models="sparse"),
        str(out), verbose=0)
    text = (out / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    sparse = json.loads(text)["models"]["sparse"]
    assert sparse["diverged"] is True and sparse["diverged_epoch"] == 0
    assert sparse["test_accuracy"] is None
    assert results["models"]["sparse"]["diverged"] is True


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="sparse_width_multiplier=0.5"):
        _tiny_config(sparse_width_multiplier=0.5).validate()
    with pytest.raises(ValueError, match="regularizers="):
        _tiny_config(regularizers=("l2", "x")).validate()


def test_results_json_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    experiment.write_json_atomic(str(path), {"a": 1})

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dump", boom)  # what files.write_atomic calls
    with pytest.raises(RuntimeError):
        experiment.write_json_atomic(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_run_comparison_failing_write_keeps_earlier_results(tmp_path, monkeypatch):
    """The results.json write inside run_comparison is atomic: a failure
    half-way leaves no partial file and the earlier results.json as it was."""
    out = tmp_path / "trial"
    experiment.run_comparison(_tiny_config(epochs=1, egf_points=1), str(out),
                              verbose=0, plot=False)
    before = (out / "results.json").read_bytes()
    real_dump, real_dumps = json.dump, json.dumps

    def half_then_fail(obj, f, *a, **k):
        f.write(real_dumps(obj)[:50])
        raise OSError(28, "No space left on device")

    def dumps_fail(obj, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", half_then_fail)
    monkeypatch.setattr(json, "dumps", dumps_fail)
    with pytest.raises(OSError, match="No space"):
        experiment.run_comparison(_tiny_config(epochs=1, egf_points=1, seed=5),
                                  str(out), verbose=0, plot=False)
    monkeypatch.setattr(json, "dump", real_dump)
    monkeypatch.setattr(json, "dumps", real_dumps)
    assert (out / "results.json").read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp")]


def test_rerun_into_same_output_dir_is_refused_then_replaced(tmp_path):
    out = tmp_path / "run"
    first = _train([*TINY, "--epochs=1", "--egf_points=1", f"--output_dir={out}"])
    assert first.returncode == 0, first.stderr[-2000:]
    before = (out / "results.json").read_bytes()
    again = _train([*TINY, "--epochs=1", "--egf_points=1", "--models=dense",
                    f"--output_dir={out}"])
    assert again.returncode == 2
    assert f"output_dir={str(out)!r} is not empty" in again.stderr
    assert "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert (out / "results.json").read_bytes() == before
    replaced = _train([*TINY, "--epochs=1", "--egf_points=1", "--models=dense",
                       "--overwrite", f"--output_dir={out}"])
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["dense"]
    # Wholly replaced: no sparse logs, one event file per writer.
    assert sorted(os.listdir(out / "tensorboard")) == ["dense"]
    train_events = [e for e in os.listdir(out / "tensorboard" / "dense" / "train")
                    if e.startswith("events.out")]
    assert len(train_events) == 1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".run.")]


def test_ctrl_c_exits_130_and_keeps_nothing(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainers.train", *TINY, "--epochs=200",
         "--egf_points=2", f"--output_dir={out}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
    deadline = time.time() + 120
    staging = []
    while time.time() < deadline and not staging:  # training has started
        staging = [p for p in tmp_path.iterdir() if p.name.startswith(".run.partial-")
                   and (p / "tensorboard" / "sparse" / "train").is_dir()]
        time.sleep(0.5)
    assert staging, "the run never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "Interrupted" in stdout
    assert list(tmp_path.iterdir()) == []  # no output_dir, no staging folder


# A SIGINT that lands while TensorFlow's C++ runs Python code (tracing a
# step) can come back out as another exception type: CI once saw exit 1 and
# a traceback. This script interrupts itself that way on purpose.
_INTERRUPT_AS_OTHER_ERROR = """
import os, signal, sys
from keras_egf import experiment
from trainers import train

def run_comparison(config, output_dir, **kwargs):
    os.makedirs(os.path.join(output_dir, "tensorboard"))
    try:
        os.kill(os.getpid(), signal.SIGINT)
    except KeyboardInterrupt as e:
        raise RuntimeError("op creation failed: a pending Python error") from e
    raise AssertionError("SIGINT did not interrupt")

experiment.run_comparison = run_comparison
sys.argv = ["keras-egf-train", *sys.argv[1:]]
train.run()
"""


@pytest.mark.parametrize("binary", ["train", "sweep"])
def test_interrupt_reraised_as_another_error_still_exits_130(tmp_path, binary):
    out = tmp_path / "run"
    if binary == "train":
        script, args = _INTERRUPT_AS_OTHER_ERROR, [*TINY, f"--output_dir={out}"]
    else:  # inside a trial: Keras Tuner would record a failed trial and go on
        script = (_INTERRUPT_AS_OTHER_ERROR.replace("from trainers import train",
                                                    "from trainers import sweep as train")
                  .replace('"keras-egf-train"', '"keras-egf-sweep"'))
        args = [f"--grid={ROOT}/configs/grids/smoke.json", f"--output_dir={out}",
                "--max_trials=2"]
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Interrupted" in proc.stdout
    if binary == "train":
        assert list(tmp_path.iterdir()) == []  # no output_dir, no staging folder
    else:  # one trial started, none finished
        assert not list(out.glob("**/results.json"))
        assert "[1/" not in proc.stdout


def test_unprepared_dataset_creates_nothing(tmp_path):
    out = tmp_path / "never"
    # --epochs=1 with TINY's --egf_points=2 is also wrong: the data comes first.
    proc = _train([*TINY, "--dataset=cifar10", f"--data_dir={tmp_path / 'tfds'}",
                   "--epochs=1", f"--output_dir={out}"])
    assert proc.returncode == 2
    assert "keras-egf-data prepare cifar10 --data_dir=DIR" in proc.stderr
    assert "egf_points" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_epochs_alone_and_a_grid_regularizer_label(tmp_path):
    """--epochs=1 with no --egf_points (default min(5, epochs)), and the
    grids' spelling --regularizers=BN, which is bn."""
    out = tmp_path / "run"
    proc = _train(["--dataset=mnist5k", "--dense_width=8", "--epochs=1",
                   "--egf_batches=1", "--batch_size=512", "--regularizers=BN",
                   "--models=sparse", "--verbose=0", f"--output_dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["regularizers"] == ["bn"]
    assert results["config"]["egf_points"] == 1
    assert [p["epoch"] for p in results["models"]["sparse"]["egf_points"]] == [0]


@pytest.mark.parametrize("flag, value", [("batch_size", "0"),
                                         ("sparse_width_multiplier", "0.5"),
                                         ("gradient_flow_every", "0")])
def test_flag_and_config_errors_share_exit_code_2(flag, value):
    proc = _train([*TINY, f"--{flag}={value}", "--output_dir=/tmp/never"])
    assert proc.returncode == 2, proc.stderr
    assert f"--{flag}" in proc.stderr and "Traceback" not in proc.stderr


def test_batch_larger_than_training_set_is_refused_unless_allowed(tmp_path):
    config = _tiny_config(epochs=1, egf_points=1, egf_batches=1, batch_size=5000,
                          models="sparse")
    with pytest.raises(ValueError, match="batch_size=5000 is larger than the "
                       "training set of mnist5k \\(4000 examples\\)"):
        experiment.run_comparison(config, str(tmp_path / "refused"), verbose=0,
                                  plot=False)
    assert not (tmp_path / "refused" / "results.json").exists()
    with pytest.warns(UserWarning, match="batch_size=5000 is larger than the "
                      "training set of mnist5k \\(4000 examples\\)"):
        experiment.run_comparison(config, str(tmp_path / "allowed"), verbose=0,
                                  plot=False, allow_small_dataset=True)
    assert (tmp_path / "allowed" / "results.json").exists()
    out = tmp_path / "run"
    proc = _train([*TINY, "--batch_size=5000", f"--output_dir={out}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("keras-egf-train: error: batch_size=5000 is larger than the training "
            "set of mnist5k (4000 examples)") in proc.stderr
    assert "--allow_small_dataset" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_dynamic_sparse_run_without_a_mask_update_is_refused(tmp_path):
    """The quickstart's 2 epochs are 126 steps; RigL's updates stop at 75 %
    (step 94), so the default ΔT of 100 would never update a mask."""
    out = tmp_path / "run"
    proc = _train(["--flagfile=configs/quickstart.flags", "--epochs=2",
                   "--egf_points=2", "--sparse_training=rigl", "--verbose=0",
                   f"--output_dir={out}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("error: sparse_training='rigl' would make no mask update: "
            "dst_update_every=100 steps, but the run has 126 training steps "
            "(2 epoch(s) of 63) and updates stop at 75% of them (step 94); "
            "choose dst_update_every <= 93") in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    # The library refuses it too, where the step count is known: 1 epoch of
    # 4000 / 256 -> 16 steps, updates below step 12.
    with pytest.raises(ValueError, match="sparse_training='set' would make no "
                       "mask update: dst_update_every=12 steps, but the run has "
                       "16 training steps"):
        experiment.run_comparison(
            _tiny_config(epochs=1, egf_points=1, sparse_training="set",
                         dst_update_every=12), str(tmp_path / "lib"), verbose=0,
            plot=False)
    assert not (tmp_path / "lib" / "results.json").exists()
    # The dense model alone has no masks to update: not refused.
    experiment.check_trainable(_tiny_config(sparse_training="set", models="dense",
                                            dst_update_every=1000), 4000)


def test_empty_output_dir_is_refused_and_the_working_directory_kept(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = _train([*TINY, "--epochs=1", "--egf_points=1", "--output_dir="],
                  cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "keras-egf-train: error: output_dir='': empty" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_a_folder_keras_egf_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = _train([*TINY, "--epochs=1", "--egf_points=1", "--overwrite",
                   f"--output_dir={out}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (f"output_dir={str(out)!r} is not a keras-egf run or sweep (holds "
            "notes.txt)") in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_output_dir_that_is_a_link_is_written_through(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    proc = _train([*TINY, "--epochs=1", "--egf_points=1", "--models=dense",
                   f"--output_dir={link}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads((target / "results.json").read_text())["models"]["dense"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


def test_sparse_width_fixes_the_sparse_model_across_dense_widths(tmp_path):
    from keras_egf import grid as grid_lib

    with pytest.raises(ValueError, match="`sparse_width` must be an integer >= "
                       "dense_width=12 .*Received: sparse_width=10"):
        _tiny_config(sparse_width=10).validate()
    paper = grid_lib.load_grid(os.path.join(ROOT, "configs/grids/paper_fashion_mnist.json"))
    for width, density in ((308, 0.1), (923, 0.3), (2768, 0.9)):
        config = paper.config({"optimizer": "adam", "regularizers": "NR",
                               "depth": 2, "dense_width": width,
                               "activation": "relu", "learning_rate": 0.001})
        assert config.sparse_width == 3076
        assert config.effective_multiplier() * width == pytest.approx(3076)
        from keras_egf.capacity import same_capacity_plan
        plan = same_capacity_plan(784, [width] * 2, 10, config.effective_multiplier())
        assert [l.sparse_shape for l in plan] == [(784, 3076), (3076, 3076), (3076, 10)]
        hidden = plan[1]
        assert hidden.active / (3076 * 3076) == pytest.approx(density ** 2, rel=0.01)
    results = experiment.run_comparison(
        _tiny_config(epochs=1, egf_points=1, sparse_width=30, pruning="snip"),
        str(tmp_path), verbose=0, plot=False)
    sparse, dense = results["models"]["sparse"], results["models"]["dense"]
    assert sparse["widths"] == [30, 10] and dense["widths"] == [12, 10]
    assert sparse["active_weights"] == dense["active_weights"]
    assert results["config"]["pruning"] == "snip"


def test_pruning_flag_changes_masks_not_counts(tmp_path):
    runs = {}
    for method in ("random", "snip"):
        out = tmp_path / method
        proc = _train([*TINY, "--epochs=1", "--egf_points=1", "--models=sparse",
                       f"--pruning={method}", "--seed=3", f"--output_dir={out}"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[method] = json.loads((out / "results.json").read_text())
    a, b = (runs[m]["models"]["sparse"] for m in ("random", "snip"))
    assert a["active_weights"] == b["active_weights"] == {
        "hidden_0": 784 * 12, "output": 12 * 10}
    assert a["mask_sha256"]["hidden_0"] != b["mask_sha256"]["hidden_0"]
    assert runs["snip"]["config"]["pruning"] == "snip"


_MOCK_TFDS_TRAIN = """
import sys
import tensorflow_datasets as tfds
from trainers import train
sys.argv = ["keras-egf-train", *sys.argv[1:]]
with tfds.testing.mock_data(num_examples=16):
    train.run()
"""


def test_arch_cnn_end_to_end_on_mock_cifar10(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "cnn"
    proc = subprocess.run(
        [sys.executable, "-c", _MOCK_TFDS_TRAIN, "--dataset=cifar10", "--arch=cnn",
         "--epochs=2", "--egf_points=2", "--egf_batches=1", "--batch_size=8",
         "--regularizers=bn,l2", "--verbose=0", f"--output_dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["arch"] == "cnn"
    assert results["dataset"]["input_shape"] == [32, 32, 3]  # images, not flattened
    sparse, dense = results["models"]["sparse"], results["models"]["dense"]
    names = ["conv_0", "conv_1", "conv_2", "conv_3", "head", "output"]
    assert list(sparse["active_weights"]) == names
    assert sparse["active_weights"] == dense["active_weights"]
    assert sparse["active_weights"]["conv_1"] == 3 * 3 * 32 * 64
    assert dense["widths"] == [32, 64, 64, 128, 128, 10]
    assert sparse["widths"] == [64, 128, 128, 256, 256, 10]
    acc = EventAccumulator(str(out / "tensorboard" / "sparse" / "egf"))
    acc.Reload()
    tags = set(acc.Tags()["tensors"] + acc.Tags()["scalars"])
    assert {f"egf_layers/conv_{i}/egf_2" for i in range(4)} <= tags, sorted(tags)


@pytest.mark.parametrize("args, message", [
    (["--arch=cnn", "--regularizers=sc"], "sc (skip connections) applies to arch='mlp'"),
    (["--arch=wrn", "--wrn_depth=12"], "--wrn_depth: `wrn_depth` must be 6n + 4 "
     "with n >= 1 (10, 16, 22, 28, ...), a Wide ResNet's depth. Received: wrn_depth=12"),
    (["--arch=cnn", "--sparse_width=400"], "--sparse_width: `sparse_width` must be "
     "None for arch='cnn' (it applies to arch='mlp' only; use "
     "sparse_width_multiplier). Received: sparse_width=400"),
])
def test_bad_arch_settings_are_named(args, message):
    proc = _train([*TINY, *args, "--output_dir=/tmp/never"])
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_sparse_training_rigl_keeps_the_pair_matched(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for mode in ("static", "rigl"):
        out = tmp_path / mode
        proc = _train([*TINY, "--epochs=3", f"--sparse_training={mode}",
                       "--dst_update_every=4", f"--output_dir={out}"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[mode] = json.loads((out / "results.json").read_text())["models"]
    static, rigl = runs["static"], runs["rigl"]
    # 3 epochs x 16 steps; updates at 4, 8, ... below 75 % of 48 steps.
    assert rigl["sparse"]["mask_updates"] == len(range(4, 36, 4))
    # what the run's check predicts (experiment.check_trainable)
    assert len(dynamic.update_steps(48, 4)) == rigl["sparse"]["mask_updates"]
    assert static["sparse"]["mask_updates"] == 0 and rigl["dense"]["mask_updates"] == 0
    assert rigl["sparse"]["active_weights"] == rigl["dense"]["active_weights"]
    assert rigl["sparse"]["mask_sha256"] != static["sparse"]["mask_sha256"]
    assert rigl["dense"] == {**rigl["dense"], "mask_sha256": static["dense"]["mask_sha256"]}
    acc = EventAccumulator(str(tmp_path / "rigl" / "tensorboard" / "sparse" / "dynamic_sparsity"))
    acc.Reload()
    assert "dynamic_sparsity/hidden_0/regrown" in set(acc.Tags()["tensors"] + acc.Tags()["scalars"])
