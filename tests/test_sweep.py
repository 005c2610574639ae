"""The sweep binary end to end: report, resume after SIGKILL, chief + workers,
divergence, mirrored strategy."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from scipy import stats

from keras_egf import experiment
from keras_egf import grid as grid_lib
from keras_egf import report
from keras_egf import results as results_lib
from keras_egf import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"dataset": "mnist5k", "dense_width": 8, "epochs": 2, "egf_points": 2,
        "egf_batches": 1, "batch_size": 512}


def _grid_file(tmp_path, axes, name="g", **fixed):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "fixed": {**TINY, **fixed},
                                "grid": axes}))
    return path


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    env.update(extra)
    return env


def _sweep_cmd(grid, out, *flags):
    return [sys.executable, "-m", "trainers.sweep", f"--grid={grid}",
            f"--output_dir={out}", *flags]


def _results(out):
    found = {}
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name, "results.json")
        if name.startswith("trial_") and os.path.exists(path):
            with open(path) as f:
                found[name] = json.load(f)
    return found


def _point(config, axes):
    value = {k: config[k] for k in axes}
    if "regularizers" in value:
        value["regularizers"] = grid_lib.regularizer_label(value["regularizers"])
    return tuple(sorted(value.items()))


def test_four_trial_sweep_and_report_match_scipy(tmp_path, free_port):
    grid = _grid_file(tmp_path, {"activation": ["relu", "swish"]},
                      optimizer="adam", learning_rate=0.01)
    out = tmp_path / "sweep"
    proc = subprocess.run(_sweep_cmd(grid, out, "--seeds=0,1"), cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[4/4]" in proc.stdout
    stored = _results(out)
    assert len(stored) == 4
    assert sorted((r["config"]["activation"], r["config"]["seed"])
                  for r in stored.values()) == [("relu", 0), ("relu", 1),
                                                ("swish", 0), ("swish", 1)]
    rep = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "trainers.report",
                           f"--sweep_dir={out}", f"--output_dir={rep}",
                           "--min_pairs=3"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| EGF_2 |" in proc.stdout and "left out of the correlations: none" in proc.stdout
    with open(rep / "correlations.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 16
    for row in table:
        models = [r["models"][row["model"]] for r in stored.values()]
        x = [m["average"][row["measure"]] for m in models]
        y = [m[row["target"]] for m in models]
        expected = stats.kendalltau(x, y)
        assert int(row["n"]) == 4
        assert float(row["kendall_tau"]) == pytest.approx(expected.statistic, abs=1e-9)
        assert float(row["kendall_p"]) == pytest.approx(expected.pvalue, abs=1e-9)
    with open(rep / "wilcoxon.csv") as f:
        cells = {(c["cells"], c["column"]): c for c in csv.DictReader(f)}
    # optimizer x regularizer: one cell with all 4 pairs; per activation, 2 < 3.
    whole = cells[("optimizer x regularizer", "NR")]
    sparse = [r["models"]["sparse"]["test_accuracy"] for r in stored.values()]
    dense = [r["models"]["dense"]["test_accuracy"] for r in stored.values()]
    if any(s != d for s, d in zip(sparse, dense)):
        assert whole["status"] == "ok" and int(whole["n"]) == 4
        assert float(whole["p_value"]) == pytest.approx(
            stats.wilcoxon(sparse, dense, alternative="greater").pvalue, abs=1e-9)
    assert cells[("optimizer x activation", "relu")]["status"] == "few"
    for name in ("report.md", "wilcoxon_optimizer_x_regularizer.png",
                 "wilcoxon_optimizer_x_activation.png", "width_adam.png"):
        assert (rep / name).stat().st_size > 0
    # Every file the team shares has the umask's ordinary mode, not 0600.
    from keras_egf import files
    shared = [out / "grid.json", *[out / n / "results.json" for n in stored],
              *[rep / n for n in ("report.md", "correlations.md",
                                  "correlations.csv", "wilcoxon.csv",
                                  "width_adam.png")]]
    for path in shared:
        assert path.stat().st_mode & 0o777 == files.default_file_mode(), path
    # TensorBoard HParams summaries, one per trial, with the trial's values.
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    for name, results in stored.items():
        acc = event_accumulator.EventAccumulator(str(out / name / "tensorboard" / "hparams"))
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        data = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"])
        hparams = data.session_start_info.hparams
        assert hparams["activation"].string_value == results["config"]["activation"]
        assert hparams["seed"].number_value == results["config"]["seed"]
        assert "sparse_test_accuracy" in acc.Tags()["tensors"]
    # ... and a real TensorBoard's HParams dashboard lists the 4 sessions.
    experiment, groups = _hparams_dashboard(out, free_port)
    assert sorted(h["name"] for h in experiment["hparamInfos"]) == ["activation", "seed"]
    shown = {(g["hparams"]["activation"], g["hparams"]["seed"]):
             {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
             for g in groups["sessionGroups"]}
    assert len(shown) == 4
    for results in stored.values():
        key = (results["config"]["activation"], results["config"]["seed"])
        assert shown[key]["sparse_test_accuracy"] == pytest.approx(
            results["models"]["sparse"]["test_accuracy"], rel=1e-6)
        assert shown[key]["dense_average_egf_2"] == pytest.approx(
            results["models"]["dense"]["average"]["egf_2"], rel=1e-6)


def _hparams_dashboard(logdir, port):
    """(experiment, session groups) from a TensorBoard's HParams plugin."""
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir",
                             str(logdir), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/data/plugin/hparams"

    def post(route, body):
        request = urllib.request.Request(f"{base}/{route}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)

    try:
        experiment = {}
        for _ in range(120):
            try:
                experiment = post("experiment", {})
                if experiment.get("hparamInfos"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert experiment.get("hparamInfos"), "tensorboard did not answer"
        groups = post("session_groups", {
            "startIndex": 0, "sliceSize": 100, "colParams": [],
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS",
                                "STATUS_FAILURE", "STATUS_RUNNING"]})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return experiment, groups


def test_sigkill_mid_trial_then_repair_deleted_and_truncated_results(tmp_path):
    optimizers = ["sgd", "momentum", "adam", "rmsprop", "adagrad"]
    grid = _grid_file(tmp_path, {"optimizer": optimizers}, epochs=3,
                      egf_points=2)
    out = tmp_path / "sweep"
    cmd = _sweep_cmd(grid, out)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    finished = [out / f"trial_{i}" / "results.json" for i in range(4)]
    last = out / "trial_4"
    deadline = time.time() + 500
    try:
        while not (all(f.exists() for f in finished)
                   and (last / "tensorboard").exists()):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline, "sweep did not reach its 5th trial"
            time.sleep(0.1)
        time.sleep(1.0)  # mid-training of the 5th trial
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (last / "results.json").exists(), "5th trial finished before the kill"
    # Damage: a deleted trial folder, a truncated and a deleted results.json.
    shutil.rmtree(out / "trial_0")
    finished[1].write_text(finished[1].read_text()[:100])
    finished[2].unlink()
    untouched = finished[3]
    before = untouched.read_bytes()
    before_mtime = os.stat(untouched).st_mtime_ns
    again = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(1 already finished)" in again.stdout
    requeued = [l for l in again.stdout.splitlines() if l.startswith("Re-queued")]
    assert len(requeued) == 1 and requeued[0].startswith("Re-queued 3 finished")
    assert "trial_0 (trial folder missing)" in requeued[0]
    assert "trial_1 (results.json not valid JSON" in requeued[0]
    assert "trial_2 (results.json missing)" in requeued[0]
    # Exactly the 3 repaired points and the interrupted one ran again.
    assert again.stdout.count("] trial ") == 4
    assert "Done: 5/5" in again.stdout
    stored = _results(out)
    assert sorted(stored) == [f"trial_{i}" for i in range(5)]
    assert sorted(r["config"]["optimizer"] for r in stored.values()) == sorted(
        optimizers)
    assert untouched.read_bytes() == before
    assert os.stat(untouched).st_mtime_ns == before_mtime
    for i in range(5):  # one TensorBoard run per re-run trial, not two
        events = os.listdir(out / f"trial_{i}" / "tensorboard" / "sparse" / "train")
        assert len([e for e in events if e.startswith("events.out")]) == 1
        state = json.loads((out / f"trial_{i}" / "trial.json").read_text())
        assert state["status"] == "COMPLETED"
    # A third run has nothing left to do.
    third = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert third.returncode == 0 and "(5 already finished)" in third.stdout
    assert third.stdout.count("] trial ") == 0 and "Re-queued" not in third.stdout
    assert untouched.read_bytes() == before


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path):
    grid = _grid_file(tmp_path, {"optimizer": ["sgd", "adam"]}, epochs=4,
                      egf_points=2)
    out = tmp_path / "sweep"
    cmd = _sweep_cmd(grid, out)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (out / "trial_0" / "tensorboard").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output[-3000:]
    assert "run the same command again to resume" in output
    assert not (out / "trial_0" / "results.json").exists()
    again = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(_results(out)) == ["trial_0", "trial_1"]


def test_chief_and_two_workers_run_every_point_once(tmp_path, free_port):
    axes = {"optimizer": ["sgd", "adam"], "activation": ["relu", "swish"]}
    grid = _grid_file(tmp_path, axes, epochs=1, egf_points=1)
    out = tmp_path / "sweep"
    port = str(free_port)
    common = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    procs = {}
    try:
        for role in ("chief", "tuner0", "tuner1"):
            flags = ["--threads=1"]
            procs[role] = subprocess.Popen(
                _sweep_cmd(grid, out, *flags), cwd=ROOT,
                env=_env(KERASTUNER_TUNER_ID=role, **common),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if role == "chief":
                time.sleep(3)  # let the chief write the sweep folder first
        outputs = {role: p.communicate(timeout=600)[0] for role, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for role, p in procs.items():
        assert p.returncode == 0, (role, outputs[role][-3000:])
    stored = _results(out)
    points = [_point(r["config"], axes) for r in stored.values()]
    expected = [_point({**p, "regularizers": []}, axes) for p in
                grid_lib.load_grid(str(grid)).points()]
    assert len(points) == 4 and sorted(points) == sorted(expected)
    # Each finished trial was reported by exactly one worker.
    lines = [l for role in ("tuner0", "tuner1")
             for l in outputs[role].splitlines() if "] trial " in l]
    assert len(lines) == 4
    assert "] trial " not in outputs["chief"]


def test_diverging_trial_is_recorded_and_left_out(tmp_path):
    """lr 1e30 makes both models' loss NaN in the first epoch."""
    spec = grid_lib.parse_grid({"name": "div", "fixed": {**TINY, "optimizer": "sgd",
                                                         "epochs": 1, "egf_points": 1},
                                "grid": {"learning_rate": [0.05, 1e30]}})
    lines = []
    tuner = sweep.SCSDCTuner(spec, progress=lines.append, directory=str(tmp_path),
                             project_name="div")
    tuner.search(verbose=0)
    stored = _results(tmp_path / "div")
    assert len(stored) == 2
    by_lr = {r["config"]["learning_rate"]: r for r in stored.values()}
    for name in ("sparse", "dense"):
        bad = by_lr[1e30]["models"][name]
        assert bad["diverged"] is True and bad["diverged_reason"] == "loss nan"
        assert bad["test_accuracy"] is None
        assert by_lr[0.05]["models"][name]["diverged"] is False
    assert any("sparse acc diverged dense acc diverged" in l for l in lines)
    out = report.write_report(str(tmp_path / "div"), str(tmp_path / "rep"),
                              min_pairs=1)
    assert "sparse: 1 diverged; dense: 1 diverged" in out["left_out"]
    assert "1 trial(s) without a matched pair of finished models" in out["left_out"]
    assert {r["n"] for r in report.correlation_table(out["sweep"])} == {1}
    # Both models diverged: counted at chance accuracy, a tied pair.
    _, _, cells = report.wilcoxon_cells(out["sweep"], min_pairs=1)
    assert cells[("sgd", "NR")]["n"] == 2
    assert cells[("sgd", "NR")]["n_diverged"] == 1
    assert cells[("sgd", "NR")]["n_effective"] == (
        1 if by_lr[0.05]["models"]["sparse"]["test_accuracy"]
        != by_lr[0.05]["models"]["dense"]["test_accuracy"] else 0)
    _, _, cells = report.wilcoxon_cells(out["sweep"], min_pairs=1,
                                        diverged="exclude")
    assert cells[("sgd", "NR")]["n"] == 1


def test_finished_results_are_reused_not_rerun(tmp_path):
    """Killed after results.json was written but before the oracle recorded
    the trial: the re-queued trial keeps the file instead of re-training."""
    spec = grid_lib.parse_grid({"name": "one", "fixed": {**TINY, "epochs": 1,
                                                         "egf_points": 1},
                                "grid": {"optimizer": ["adam"]}})
    tuner = sweep.SCSDCTuner(spec, progress=lambda line: None,
                             directory=str(tmp_path), project_name="one")
    tuner.search(verbose=0)
    trial = next(iter(tuner.oracle.trials.values()))
    path = tmp_path / "one" / f"trial_{trial.trial_id}" / "results.json"
    before, mtime = path.read_bytes(), os.stat(path).st_mtime_ns
    calls = []
    original = experiment.run_comparison
    experiment.run_comparison = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        metrics = tuner.run_trial(trial)
    finally:
        experiment.run_comparison = original
    assert calls == []
    assert path.read_bytes() == before and os.stat(path).st_mtime_ns == mtime
    stored = json.loads(before)
    assert metrics["sparse_test_accuracy"] == stored["models"]["sparse"]["test_accuracy"]
    # A results file of another config is not taken for this trial's.
    other = grid_lib.parse_grid({"name": "x", "fixed": {**TINY, "epochs": 1, "egf_points": 1},
                                 "grid": {"optimizer": ["sgd"]}})
    with pytest.raises(ValueError, match="holds another configuration"):
        results_lib.read_finished(str(path.parent), other.config({"optimizer": "sgd"}))
    assert results_lib.read_finished(str(path.parent), spec.config({"optimizer": "adam"})) == stored


def test_resuming_over_results_of_another_version_warns(tmp_path):
    """The start line names finished results that another keras_egf version
    wrote (it may build the same config differently); they are kept."""
    grid = _grid_file(tmp_path, {"optimizer": ["sgd", "adam"]}, epochs=1, egf_points=1)
    out = tmp_path / "sweep"
    first = subprocess.run(_sweep_cmd(grid, out, "--max_trials=1"), cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Warning" not in first.stdout
    # Progress inside a trial (default --verbose=2): which model, each epoch.
    assert "--- training the sparse model" in first.stdout
    assert "--- training the dense model" in first.stdout
    epoch_lines = [l for l in first.stdout.splitlines() if " - loss: " in l]
    assert len(epoch_lines) == 2  # one epoch of each model
    (path,) = out.glob("trial_*/results.json")
    results = json.loads(path.read_text())
    results["versions"]["keras_egf"] = "0.0.1"
    path.write_text(json.dumps(results))
    again = subprocess.run(_sweep_cmd(grid, out, "--verbose=0"), cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert " - loss: " not in again.stdout and "--- training" not in again.stdout
    assert "(1 already finished)" in again.stdout
    assert "another keras_egf version (1 by 0.0.1); this is" in again.stdout
    assert json.loads(path.read_text())["versions"]["keras_egf"] == "0.0.1"  # kept


def test_resuming_with_another_grid_is_refused(tmp_path):
    a = grid_lib.parse_grid({"name": "a", "grid": {"optimizer": ["sgd"]}})
    b = grid_lib.parse_grid({"name": "a", "grid": {"optimizer": ["adam"]}})
    sweep.check_same_grid(str(tmp_path), a)
    sweep.check_same_grid(str(tmp_path), a)  # same grid: fine
    saved = (tmp_path / "grid.json").read_bytes()
    with pytest.raises(ValueError, match="different grid"):
        sweep.check_same_grid(str(tmp_path), b)
    assert (tmp_path / "grid.json").read_bytes() == saved
    with pytest.raises(ValueError, match="seeds: 'x'|seeds: -1"):
        a.with_seeds([-1])


def test_bad_seeds_flag_fails_before_training(tmp_path):
    grid = _grid_file(tmp_path, {"optimizer": ["sgd"]})
    proc = subprocess.run(_sweep_cmd(grid, tmp_path / "out", "--seeds=0,x"),
                          cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "--seeds: 'x'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unprepared_dataset_fails_before_any_trial(tmp_path):
    grid = _grid_file(tmp_path, {"optimizer": ["sgd", "adam"]},
                      dataset="cifar10", data_dir=str(tmp_path / "no_data"))
    proc = subprocess.run(_sweep_cmd(grid, tmp_path / "out"), cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "keras-egf-data prepare cifar10" in proc.stderr
    assert not (tmp_path / "out").exists()


MIRRORED = r"""
import os
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import json, keras, numpy as np
from keras_egf.architectures import build_mlp
from keras_egf.pruning import prune
from keras_egf.callbacks import gradient_flow_on_batches
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 20)).astype("float32"); y = rng.integers(0, 5, 64)
def make():
    keras.utils.set_random_seed(1)
    m = build_mlp((20,), [16], 5, masked=True, gradient_flow_every=2)
    prune(m, 0.5, seed=3)
    m.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    a = make()
    fixed_a = gradient_flow_on_batches(a, [(x, y)])
b = make()
fixed_b = gradient_flow_on_batches(b, [(x, y)])
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)  # a measured, an unmeasured step
with strategy.scope():
    ha = a.fit(ds, epochs=1, verbose=0).history
hb = b.fit(ds, epochs=1, verbose=0).history
diff = max(float(np.abs(va.numpy() - vb.numpy()).max()) for va, vb in zip(a.weights, b.weights))
zero = all(float(np.abs(l.kernel.numpy()[l.mask.numpy() == 0]).max(initial=0)) == 0
           for l in a.layers if hasattr(l, "mask"))
# The test pipeline still yields all 1,000 images after distributed use (an
# in-memory cache on it used to come back partial under MirroredStrategy).
from keras_egf import data
with strategy.scope():
    c = build_mlp((784,), [16], 10, masked=True)
    c.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"],
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds5k = data.make_datasets("mnist5k", batch_size=256, seed=0)
    c.fit(ds5k.train, epochs=2, verbose=0)
    evaluated = [c.evaluate(ds5k.test, verbose=0, return_dict=True)["accuracy"]]
    for _ in range(4):  # the partial read was a race: try fresh pipelines too
        fresh = data.make_datasets("mnist5k", batch_size=256, seed=0)
        evaluated.append(c.evaluate(fresh.test, verbose=0, return_dict=True)["accuracy"])
_, _, x_te, y_te = data.mnist5k_arrays()
by_hand = float(np.mean(np.argmax(c.predict(x_te.reshape(1000, -1) / 255.0, verbose=0), -1) == y_te))
count = sum(int(b[1].shape[0]) for b in ds5k.test)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "a": ha, "b": hb,
                  "fixed_a": fixed_a, "fixed_b": fixed_b, "diff": diff, "zero": zero,
                  "test_count": count, "evaluated": evaluated, "by_hand": by_hand}))
"""


def test_gradient_flow_under_mirrored_strategy_matches_one_device(tmp_path):
    """Two replicas (logical CPUs) report the global batch's gf/EGF."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["replicas"] == 2 and r["zero"] is True
    assert r["test_count"] == 1000
    assert r["evaluated"] == pytest.approx([r["by_hand"]] * 5, abs=1e-6)
    assert r["diff"] < 1e-6
    for name in ("loss", "gf_1", "gf_2", "egf_1", "egf_2"):
        assert r["a"][name][0] == pytest.approx(r["b"][name][0], rel=1e-5), name
    for name in report.MEASURES:
        assert r["fixed_a"][name] == pytest.approx(r["fixed_b"][name], rel=1e-5), name
    assert sweep.mirrored_strategy() is None  # this machine: fewer than 2 GPUs


def test_packed_sweep_report_equals_the_unpacked_one(tmp_path):
    """--pack: 8 points in 2 packs of 4 (per optimizer: 2 widths x 2
    learning rates), with BatchNorm; every tau and p of the report equals
    the unpacked sweep's to 3 significant digits; resume keeps the packs."""
    axes = {"optimizer": ["sgd", "adam"], "dense_width": [8, 16],
            "learning_rate": [0.05, 0.01]}
    grid = tmp_path / "packable.json"
    fixed = {k: v for k, v in TINY.items() if k != "dense_width"}
    grid.write_text(json.dumps({"name": "packable", "grid": axes, "fixed": {
        **fixed, "epochs": 3, "regularizers": "BN"}}))
    reports = {}
    for label, flags in (("unpacked", ()), ("packed", ("--pack=4",))):
        out = tmp_path / label
        proc = subprocess.run(_sweep_cmd(grid, out, *flags), cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        if label == "packed":
            assert "2 trials (packs of up to 4 of the 8 points)" in proc.stdout
            assert proc.stdout.count("(+3 packed point(s) in point_*/)") == 2
            points = sorted(str(p.relative_to(out)) for p in out.glob("**/results.json"))
            assert len(points) == 8 and sum("point_" in p for p in points) == 6
            again = subprocess.run(_sweep_cmd(grid, out, "--pack=4"), cwd=ROOT,
                                   env=_env(), capture_output=True, text=True, timeout=300)
            assert again.returncode == 0 and "(2 already finished)" in again.stdout
            other = subprocess.run(_sweep_cmd(grid, out, "--pack=2"), cwd=ROOT,
                                   env=_env(), capture_output=True, text=True, timeout=300)
            assert other.returncode == 2 and "--pack" in other.stderr
        rep = tmp_path / f"{label}_report"
        proc = subprocess.run([sys.executable, "-m", "trainers.report",
                               f"--sweep_dir={out}", f"--output_dir={rep}"],
                              cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        with open(rep / "correlations.csv") as f:
            reports[label] = list(csv.DictReader(f))
    assert len(reports["packed"]) == len(reports["unpacked"]) == 16
    for a, b in zip(reports["packed"], reports["unpacked"]):
        assert {k: a[k] for k in ("measure", "target", "model")} == \
            {k: b[k] for k in ("measure", "target", "model")}
        assert a["n"] == b["n"] == "8"
        for key in ("kendall_tau", "kendall_p", "spearman_rho", "spearman_p"):
            assert float(f"{float(a[key]):.3g}") == float(f"{float(b[key]):.3g}"), (a, b)


@pytest.mark.parametrize("case", ["empty", "not_a_sweep", "overwrite_not_a_sweep",
                                  "file", "under_a_file", "read_only"])
def test_an_output_dir_the_sweep_cannot_use_is_refused_in_one_line(tmp_path, case):
    """Exit 2 and one line naming it, before anything is written; the
    user's files in or beside it are left as they were."""
    grid = _grid_file(tmp_path, {"optimizer": ["sgd"]}, epochs=1, egf_points=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    cwd, flags = ROOT, []
    if case == "empty":  # would write into the working directory
        out, cwd, expected = "", mine, "output_dir='': empty"
    elif case == "not_a_sweep":
        out, expected = mine, (f"output_dir={str(mine)!r} is not empty and not a "
                               "keras-egf sweep (holds notes.txt)")
    elif case == "overwrite_not_a_sweep":
        out, flags = mine, ["--overwrite"]
        expected = (f"output_dir={str(mine)!r} is not a keras-egf run or sweep "
                    "(holds notes.txt)")
    elif case == "file":
        out = mine / "notes.txt"
        expected = f"output_dir={str(out)!r}: exists and is not a folder"
    elif case == "under_a_file":
        out = mine / "notes.txt" / "sweep"
        expected = (f"output_dir={str(out)!r}: cannot be written "
                    f"({mine / 'notes.txt'} is not a folder)")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders (tests/test_files.py "
                        "checks this case with os.access patched)")
        out = mine / "sweep"
        expected = f"output_dir={str(out)!r}: cannot be written ({mine} is not writable)"
        os.chmod(mine, 0o555)
    try:
        proc = subprocess.run(_sweep_cmd(grid, out, *flags), cwd=cwd, env=_env(),
                              capture_output=True, text=True)
    finally:
        os.chmod(mine, 0o755)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("keras-egf-sweep")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"keras-egf-sweep: error: {expected}"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "mine"


# The sweep binary with its one trial waiting for a line on stdin.
_WAITING_TRIAL = r"""
import sys
from keras_egf import experiment
original = experiment.run_comparison

def run_comparison(*args, **kwargs):
    print("trial started", flush=True)
    sys.stdin.readline()
    return original(*args, **kwargs)

experiment.run_comparison = run_comparison
from trainers import sweep
sys.argv = ["keras-egf-sweep", *sys.argv[1:]]
sweep.run()
"""


def test_a_second_sweep_in_the_same_output_dir_is_refused_by_its_lock(tmp_path):
    """Without chief/worker variables, a second process would run every
    trial again: it is refused, naming the first; once the first is killed
    (its lock left behind), the next run takes the lock over and resumes."""
    import socket

    from keras_egf import files

    grid = _grid_file(tmp_path, {"optimizer": ["sgd"]}, epochs=1, egf_points=1)
    out = tmp_path / "sweep"
    first = subprocess.Popen(
        [sys.executable, "-c", _WAITING_TRIAL, f"--grid={grid}", f"--output_dir={out}"],
        cwd=ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in first.stdout:  # until its trial runs (or it ends)
            seen.append(line)
            if line.startswith("trial started"):
                break
        assert seen and seen[-1].startswith("trial started"), "".join(seen)
        second = subprocess.run(_sweep_cmd(grid, out), cwd=ROOT, env=_env(),
                                capture_output=True, text=True)
    finally:
        first.kill()  # SIGKILL: no chance to remove its lock
        first.wait()
    assert second.returncode == 2, second.stderr[-3000:]
    assert (f"keras-egf-sweep: error: output_dir={str(out)!r} is in use by another "
            f"keras-egf-sweep (PID {first.pid} on {socket.gethostname()}, since "
            ) in second.stderr
    assert "] trial " not in second.stdout and not list(out.glob("trial_*/results.json"))
    assert json.loads((out / files.SWEEP_LOCK).read_text())["pid"] == first.pid
    third = subprocess.run(_sweep_cmd(grid, out), cwd=ROOT, env=_env(),
                           capture_output=True, text=True)
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"Warning: took over the lock of {out} from PID {first.pid}" in third.stdout
    assert "Done: 1/1" in third.stdout
    assert not (out / files.SWEEP_LOCK).exists()  # released at the end


# The sweep binary with one folder that nothing can be removed from (as a
# read-only folder, whoever runs the test: root ignores folder modes).
_UNWRITABLE_FOLDER = r"""
import os
import sys
folder = sys.argv.pop(1)
real_remove = os.remove

def remove(path, *args, **kwargs):
    if os.path.dirname(os.path.abspath(path)) == folder:
        raise PermissionError(13, "Permission denied", path)
    return real_remove(path, *args, **kwargs)

os.remove = remove
from trainers import sweep
sys.argv = ["keras-egf-sweep", *sys.argv[1:]]
sweep.run()
"""


def test_a_trial_that_cannot_be_written_fails_the_sweep_and_is_rerun(tmp_path):
    grid = _grid_file(tmp_path, {"optimizer": ["sgd", "adam"]}, epochs=1,
                      egf_points=1)
    out = tmp_path / "sweep"
    first = subprocess.run(_sweep_cmd(grid, out), cwd=ROOT, env=_env(),
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    damaged = out / "trial_0"
    (damaged / "results.json").write_text('{"config": {"optim')
    kept = (out / "trial_1" / "results.json").read_bytes()
    again = subprocess.run([sys.executable, "-c", _UNWRITABLE_FOLDER, str(damaged),
                            f"--grid={grid}", f"--output_dir={out}"],
                           cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert again.returncode == 1, again.stderr[-3000:]
    assert "Done: 1/2" in again.stdout
    assert (f"keras-egf-sweep: 1 trial(s) failed: trial_0 ({damaged}: "
            "PermissionError: [Errno 13] Permission denied") in again.stderr
    assert "run the same command again" in again.stderr
    # Writable again: the failed trial is re-run, the finished one kept.
    third = subprocess.run(_sweep_cmd(grid, out), cwd=ROOT, env=_env(),
                           capture_output=True, text=True)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "trial_0 (failed in an earlier run)" in third.stdout
    assert third.stdout.count("] trial ") == 1 and "Done: 2/2" in third.stdout
    assert json.loads((damaged / "results.json").read_text())["models"]["sparse"]
    assert (out / "trial_1" / "results.json").read_bytes() == kept
    from keras_egf import files  # all of it keras-egf's: --overwrite may replace it
    assert files.output_kind(str(out)) == "sweep" and files.foreign_entries(str(out)) == []
