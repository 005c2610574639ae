"""The report's statistics on hand-made results files (no training)."""

import csv
import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from keras_egf import report


def _model(acc, loss, egf, diverged=False):
    if diverged:
        return {"diverged": True, "diverged_epoch": 0, "test_accuracy": None,
                "test_loss": None, "average": {m: None for m in report.MEASURES}}
    return {"diverged": False, "test_accuracy": acc, "test_loss": loss,
            "average": {"gf_1": 2 * egf, "gf_2": egf / 3, "egf_1": egf,
                        "egf_2": egf / 10}}


def _write(tmp_path, trials):
    for i, (config, models) in enumerate(trials):
        folder = tmp_path / "sweep" / f"trial_{i:02d}"
        folder.mkdir(parents=True)
        full = {"optimizer": "adam", "regularizers": [], "activation": "relu",
                "dense_width": 8, **config}
        (folder / "results.json").write_text(json.dumps(
            {"config": full, "models": models}))
        (folder / "trial.json").write_text("{}")
    return str(tmp_path / "sweep")


def _fixture(tmp_path):
    rng = np.random.default_rng(3)
    trials = []
    for i in range(12):
        optimizer = ("sgd", "adam")[i % 2]
        regs = [[], ["bn"]][(i // 2) % 2]
        activation = ("relu", "swish")[(i // 4) % 2]
        width = (8, 16, 32)[i % 3]
        s_acc, d_acc = rng.uniform(0.5, 0.9, 2)
        models = {"sparse": _model(float(s_acc), float(2 - s_acc), float(rng.uniform(1, 9))),
                  "dense": _model(float(d_acc), float(2 - d_acc + rng.normal(0, .1)),
                                  float(rng.uniform(1, 9)))}
        trials.append(({"optimizer": optimizer, "regularizers": regs,
                        "activation": activation, "dense_width": width}, models))
    # One diverged sparse model, one trial still running (no results.json).
    trials.append(({"optimizer": "sgd"}, {"sparse": _model(0, 0, 0, diverged=True),
                                          "dense": _model(0.7, 0.5, 3.0)}))
    path = _write(tmp_path, trials)
    os.makedirs(os.path.join(path, "trial_99"))
    with open(os.path.join(path, "trial_99", "trial.json"), "w") as f:
        f.write("{}")
    os.makedirs(os.path.join(path, "trial_98"))
    with open(os.path.join(path, "trial_98", "trial.json"), "w") as f:
        f.write('{"status": "FAILED"}')
    return path, trials


def test_kendall_table_matches_scipy_and_leaves_out_diverged(tmp_path):
    path, trials = _fixture(tmp_path)
    sweep = report.load_sweep(path)
    assert len(sweep.trials) == 13
    assert sweep.incomplete == ["trial_98 (failed)", "trial_99"]
    assert sweep.left_out("sparse") == {"diverged": 1}
    assert sweep.left_out("dense") == {}
    rows = {(r["model"], r["measure"], r["target"]): r
            for r in report.correlation_table(sweep)}
    assert len(rows) == 16
    for model, n in (("sparse", 12), ("dense", 13)):
        kept = [m[model] for _, m in trials if not m[model]["diverged"]]
        for measure in report.MEASURES:
            x = [m["average"][measure] for m in kept]
            for target in report.TARGETS:
                y = [m[target] for m in kept]
                row = rows[(model, measure, target)]
                expected = stats.kendalltau(x, y)
                assert row["n"] == n
                assert row["kendall_tau"] == pytest.approx(expected.statistic, abs=1e-12)
                assert row["kendall_p"] == pytest.approx(expected.pvalue, abs=1e-12)
                assert row["spearman_rho"] == pytest.approx(
                    stats.spearmanr(x, y).statistic, abs=1e-12)
    # Accuracy = 2 - loss for sparse: τ(measure, loss) = -τ(measure, acc).
    assert rows[("sparse", "egf_1", "test_loss")]["kendall_tau"] == pytest.approx(
        -rows[("sparse", "egf_1", "test_accuracy")]["kendall_tau"])


def test_wilcoxon_cells_match_scipy_and_mark_small_cells(tmp_path):
    path, trials = _fixture(tmp_path)
    sweep = report.load_sweep(path)
    rows, cols, cells = report.wilcoxon_cells(sweep, "optimizer", "regularizer",
                                              min_pairs=3)
    assert rows == ["sgd", "adam"] and cols == ["NR", "BN"]
    for (optimizer, label), cell in cells.items():
        pairs = [(m["sparse"]["test_accuracy"], m["dense"]["test_accuracy"])
                 for c, m in trials
                 if c["optimizer"] == optimizer and not m["sparse"]["diverged"]
                 and ("BN" if c.get("regularizers") else "NR") == label]
        assert cell["n"] == len(pairs) == 3
        expected = stats.wilcoxon([p[0] for p in pairs], [p[1] for p in pairs],
                                  alternative="greater")
        assert cell["status"] == "ok"
        assert cell["p_value"] == pytest.approx(expected.pvalue, abs=1e-12)
    _, _, few = report.wilcoxon_cells(sweep, "optimizer", "regularizer", min_pairs=4)
    assert {c["status"] for c in few.values()} == {"few"}
    assert report.cell_label(few[("adam", "NR")], 4) == "n<4"
    with pytest.raises(ValueError, match="min_pairs=0"):
        report.wilcoxon_cells(sweep, min_pairs=0)


def test_all_tied_cell_is_not_a_p_value(tmp_path):
    same = {"sparse": _model(0.8, 0.4, 2.0), "dense": _model(0.8, 0.4, 2.0)}
    path = _write(tmp_path, [({}, same)] * 3)
    _, _, cells = report.wilcoxon_cells(report.load_sweep(path), min_pairs=2)
    cell = cells[("adam", "NR")]
    assert cell["status"] == "ties" and math.isnan(cell["p_value"])
    assert report.cell_label(cell, 2) == "ties"


def test_write_report_files(tmp_path):
    path, _ = _fixture(tmp_path)
    out = tmp_path / "report"
    result = report.write_report(path, str(out), min_pairs=3)
    for name in ("report.md", "correlations.md", "correlations.csv", "wilcoxon.csv",
                 "wilcoxon_optimizer_x_regularizer.png",
                 "wilcoxon_optimizer_x_activation.png", "width_sgd.png",
                 "width_adam.png"):
        assert (out / name).stat().st_size > 0, name
    text = (out / "report.md").read_text()
    assert "sparse: 1 diverged" in text and "trial_99" in text
    assert "| EGF_1 |" in result["table"]
    rows = {(r["model"], r["measure"], r["target"]): r
            for r in report.correlation_table(result["sweep"])}
    rho = rows[("sparse", "egf_2", "test_accuracy")]["spearman_rho"]
    assert f"{rho:+.3f}" in text.split("Spearman's ρ, same layout:")[1]
    assert "| EGF_1 | 0.419 | 0.373 | 0.365 | 0.354 |" in text  # paper reference
    with open(out / "wilcoxon.csv") as f:
        wil = list(csv.DictReader(f))
    # 2 optimizers x 2 regularizers + 2 optimizers x 2 activations.
    assert len(wil) == 8
    assert all(w["status"] in ("ok", "few") for w in wil)


def test_effective_n_gates_on_non_zero_differences(tmp_path):
    # 5 pairs, 2 of them tied: Wilcoxon uses n=3 -> below min_pairs=5.
    accs = [(0.8, 0.7), (0.9, 0.8), (0.7, 0.6), (0.8, 0.8), (0.6, 0.6)]
    trials = [({}, {"sparse": _model(s, 1 - s, 2.0), "dense": _model(d, 1 - d, 2.0)})
              for s, d in accs]
    sweep = report.load_sweep(_write(tmp_path, trials))
    _, _, cells = report.wilcoxon_cells(sweep, min_pairs=5)
    cell = cells[("adam", "NR")]
    assert cell["n"] == 5 and cell["n_effective"] == 3
    assert cell["status"] == "few" and math.isnan(cell["p_value"])
    _, _, cells = report.wilcoxon_cells(sweep, min_pairs=3)
    expected = stats.wilcoxon([a for a, _ in accs], [b for _, b in accs],
                              alternative="greater")
    assert cells[("adam", "NR")]["p_value"] == pytest.approx(expected.pvalue)


def test_diverged_sparse_model_counts_as_a_loss_by_default(tmp_path):
    pairs = [(0.9, 0.8), (0.85, 0.8), (0.95, 0.9), (0.8, 0.75), (0.9, 0.85)]
    trials = [({}, {"sparse": _model(s, 1 - s, 2.0), "dense": _model(d, 1 - d, 2.0)})
              for s, d in pairs]
    for _ in range(3):  # sparse diverged, dense fine
        trials.append(({}, {"sparse": _model(0, 0, 0, diverged=True),
                            "dense": _model(0.8, 0.2, 2.0)}))
    path = _write(tmp_path, trials)
    for folder in sorted(os.listdir(path)):  # results carry the class count
        f = os.path.join(path, folder, "results.json")
        r = json.load(open(f))
        r["dataset"] = {"num_classes": 10}
        json.dump(r, open(f, "w"))
    sweep = report.load_sweep(path)
    _, _, cells = report.wilcoxon_cells(sweep, min_pairs=5)
    cell = cells[("adam", "NR")]
    assert cell["n"] == 8 and cell["n_diverged"] == 3
    sparse = [s for s, _ in pairs] + [0.1] * 3  # chance accuracy, 10 classes
    dense = [d for _, d in pairs] + [0.8] * 3
    expected = stats.wilcoxon(sparse, dense, alternative="greater")
    assert cell["p_value"] == pytest.approx(expected.pvalue)
    _, _, excluded = report.wilcoxon_cells(sweep, min_pairs=5, diverged="exclude")
    assert excluded[("adam", "NR")]["n"] == 5
    # Excluding the diverged pairs would make H1 look significant.
    assert excluded[("adam", "NR")]["p_value"] < 0.05 < cell["p_value"]
    result = report.write_report(path, str(tmp_path / "r"), min_pairs=5)
    assert "chance accuracy" in result["markdown"]
    assert "--diverged=loss" in result["left_out"]
    with pytest.raises(ValueError, match="diverged='drop'"):
        report.wilcoxon_cells(sweep, diverged="drop")


def test_unreadable_results_are_listed_as_failed(tmp_path):
    path, _ = _fixture(tmp_path)
    with open(os.path.join(path, "trial_00", "results.json"), "w") as f:
        f.write('{"config": {"optimizer": "ad')  # truncated
    sweep = report.load_sweep(path)
    assert len(sweep.trials) == 12
    assert any(i.startswith("trial_00 (failed: unreadable results.json")
               for i in sweep.incomplete)
    result = report.write_report(path, str(tmp_path / "r"), min_pairs=3)
    assert "trial_00 (failed" in result["markdown"]
    with pytest.raises(ValueError, match="trial_00.*not a keras-egf results file"):
        report.load_sweep(path, strict=True)


def test_bad_sweep_dirs_are_named(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        report.load_sweep(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results.json"):
        report.load_sweep(str(tmp_path / "empty"))
    bad = tmp_path / "bad" / "trial_0"
    bad.mkdir(parents=True)
    (bad / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="results.json"):
        report.load_sweep(str(tmp_path / "bad"), strict=True)
    with pytest.raises(ValueError, match="no readable results.json.*trial_0"):
        report.load_sweep(str(tmp_path / "bad"))  # nothing readable


def test_report_groups_by_pruning_method_when_a_sweep_varies_it(tmp_path):
    rng = np.random.default_rng(1)
    trials = []
    for i in range(12):
        s_acc, d_acc = rng.uniform(0.5, 0.9, 2)
        trials.append(({"pruning": ("random", "snip")[i % 2]},
                       {"sparse": _model(float(s_acc), 1.0, 2.0 + i),
                        "dense": _model(float(d_acc), 1.0, 3.0 + i)}))
    path = _write(tmp_path, trials)
    rows, cols, cells = report.wilcoxon_cells(report.load_sweep(path),
                                              "optimizer", "pruning", min_pairs=3)
    assert cols == ["random", "snip"] and cells[("adam", "snip")]["n"] == 6
    result = report.write_report(path, str(tmp_path / "r"), min_pairs=3)
    assert "### optimizer × pruning" in result["markdown"]
    assert (tmp_path / "r" / "wilcoxon_optimizer_x_pruning.png").exists()


def test_by_setting_means_and_per_optimizer_sensitivity(tmp_path):
    path, trials = _fixture(tmp_path)
    sweep = report.load_sweep(path)
    rows = {r["value"]: r for r in report.setting_means(sweep, "regularizer")}
    assert list(rows) == ["NR", "BN"]
    for label, regs in (("NR", []), ("BN", ["bn"])):
        pairs = [(m["sparse"]["test_accuracy"], m["dense"]["test_accuracy"])
                 for c, m in trials[:12] if c["regularizers"] == regs]
        diff = [s - d for s, d in pairs]
        assert rows[label]["pairs"] == len(pairs) == 6  # the diverged pair left out
        assert rows[label]["mean_difference"] == pytest.approx(np.mean(diff))
        assert rows[label]["median_difference"] == pytest.approx(np.median(diff))
        assert rows[label]["sparse_wins"] == sum(d > 0 for d in diff)
        assert rows[label]["sparse_accuracy"] == pytest.approx(np.mean([s for s, _ in pairs]))
    corr = report.per_setting_correlations(sweep, "optimizer", "test_loss")
    row = next(r for r in corr if r["value"] == "adam" and r["model"] == "dense"
               and r["measure"] == "egf_2")
    adam = [m["dense"] for c, m in trials[:12] if c["optimizer"] == "adam"]
    expected = stats.kendalltau([m["average"]["egf_2"] for m in adam],
                                [m["test_loss"] for m in adam])
    assert row["n"] == 6
    assert row["kendall_tau"] == pytest.approx(expected.statistic)
    assert row["kendall_p"] == pytest.approx(expected.pvalue)
    out = tmp_path / "report"
    text = report.write_report(path, str(out))["markdown"]
    assert "## Sensitivity to gradient flow, per optimizer" in text
    assert "| regularizer | pairs |" in text
    with open(out / "by_setting.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 + 2 + 2


def test_results_of_different_library_versions_are_named(tmp_path):
    path, _ = _fixture(tmp_path)
    out = tmp_path / "report"
    text = report.write_report(path, str(out), min_pairs=3)["left_out"]
    assert "different keras_egf versions" not in text  # none recorded: one kind
    for i, version in ((0, "0.1.0"), (1, "0.1.0"), (2, "0.2.0")):
        f = os.path.join(path, f"trial_{i:02d}", "results.json")
        results = json.load(open(f))
        results["versions"] = {"keras_egf": version, "tensorflow": "2.21.0"}
        json.dump(results, open(f, "w"))
    sweep = report.load_sweep(path)
    assert sweep.library_versions() == {"0.1.0": 2, "0.2.0": 1, "unknown": 10}
    text = report.write_report(path, str(out), min_pairs=3)["left_out"]
    assert ("different keras_egf versions: 0.1.0 (2 trials), 0.2.0 (1 trial), "
            "unknown (10 trials)") in text
    assert text.startswith("13 trials read")
    assert "different keras_egf versions" in (out / "report.md").read_text()


def test_plural():
    assert [report.plural(n, "trial") for n in (0, 1, 2)] == [
        "0 trials", "1 trial", "2 trials"]


def test_report_binary_refuses_an_empty_output_dir(tmp_path):
    import subprocess
    import sys

    path, _ = _fixture(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("mine")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.report", f"--sweep_dir={path}",
         "--output_dir="], cwd=cwd, capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "keras-egf-report: error: output_dir='': empty" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(cwd)) == ["notes.txt"]
    assert not os.path.exists(os.path.join(path, "report"))


def test_a_new_report_replaces_the_previous_ones_files_only(tmp_path):
    path, trials = _fixture(tmp_path)
    out = tmp_path / "report"
    first = report.write_report(path, str(out), min_pairs=3)
    (out / "README.md").write_text("notes kept beside the report")
    (out / "width_notes.txt").write_text("not a report file")
    (out / "figures").mkdir()
    # The same folder, a sweep without the SGD trials: the first report's
    # width_sgd.png must not stay beside the new report.
    adam = tmp_path / "adam"
    adam.mkdir()
    path = _write(adam, [t for t in trials if t[0].get("optimizer") == "adam"])
    second = report.write_report(path, str(out), min_pairs=3)
    assert "width_sgd.png" in first["files"] and "width_sgd.png" not in second["files"]
    assert sorted(os.listdir(out)) == sorted(
        second["files"] + ["README.md", "width_notes.txt", "figures"])
    assert (out / "README.md").read_text() == "notes kept beside the report"
    assert report.report_files(str(out)) == sorted(second["files"])


def _edit_results(path, folder, change):
    f = os.path.join(path, folder, "results.json")
    with open(f) as fh:
        results = json.load(fh)
    change(results)
    with open(f, "w") as fh:
        json.dump(results, fh)


@pytest.mark.parametrize("change, named", [
    # Issue 27.6: read as a trial, plotted as width_3.png.
    (lambda r: r["config"].update(optimizer=3, dense_width="sixteen"),
     "config.optimizer: expected str, got int 3"),
    # Issue 27.6: KeyError 'dense_width' in the width plot.
    (lambda r: r["config"].pop("dense_width"), "config.dense_width: missing"),
    (lambda r: r["config"].update(optimizer="adamax"),
     "config.optimizer: `optimizer` must be one of ['sgd', 'momentum', 'adagrad', "
     "'rmsprop', 'adam', 'adamw'] (or one registered with "
     "keras_egf.optimizers.register_optimizer). Received: optimizer='adamax'"),
    (lambda r: r["models"]["dense"].update(test_accuracy=float("nan")),
     "models.dense.test_accuracy: nan is not a finite number"),
])
def test_results_that_break_the_schema_are_listed_not_reported(tmp_path, change, named):
    path, _ = _fixture(tmp_path)
    _edit_results(path, "trial_00", change)
    sweep = report.load_sweep(path)
    assert len(sweep.trials) == 12 and "trial_00" not in {t.trial_id for t in sweep.trials}
    (failed,) = [i for i in sweep.incomplete if i.startswith("trial_00")]
    assert failed.startswith(f"trial_00 (failed: invalid results.json: {named}"), failed
    out = tmp_path / "r"
    result = report.write_report(path, str(out), min_pairs=3)
    assert f"trial_00 (failed: invalid results.json: {named}" in result["markdown"]
    assert sorted(p.name for p in out.glob("width_*.png")) == [
        "width_adam.png", "width_sgd.png"]
    with pytest.raises(ValueError) as e:
        report.load_sweep(path, strict=True)
    assert str(e.value).startswith(
        os.path.join(path, "trial_00", "results.json")
        + f": not a keras-egf results file ({named}"), str(e.value)


def _two_grid_sweeps(tmp_path, second_grid):
    rng = np.random.default_rng(5)
    root = tmp_path / "both"
    for name, grid in (("a", {"name": "smoke", "fixed": {"epochs": 3},
                               "grid": {"optimizer": ["sgd", "adam"], "seed": [0]}}),
                       ("b", second_grid)):
        (root / name).mkdir(parents=True)
        _write(root / name, [({"optimizer": ("sgd", "adam")[i % 2]},
                              {"sparse": _model(*rng.uniform(0.5, 0.9, 1), 1.0, 2.0 + i),
                               "dense": _model(*rng.uniform(0.5, 0.9, 1), 1.0, 3.0 + i)})
                             for i in range(6)])
        (root / name / "sweep" / "grid.json").write_text(json.dumps(grid))
    return str(root)


def test_results_of_two_grids_in_one_folder_are_refused_or_listed(tmp_path):
    """Issue 27.6: two sweeps of different grids under one --sweep_dir were
    reported as one, without a word."""
    other = {"name": "smoke", "fixed": {"epochs": 10},
             "grid": {"optimizer": ["sgd", "adam"]}}
    path = _two_grid_sweeps(tmp_path, other)
    expected = (f"sweep_dir={path!r} holds the results of 2 different grids: "
                f"grid 'smoke' ({os.path.join('a', 'sweep', 'grid.json')}) (6 trials); "
                f"grid 'smoke' ({os.path.join('b', 'sweep', 'grid.json')}) (6 trials).")
    with pytest.raises(ValueError) as e:
        report.load_sweep(path)
    assert str(e.value).startswith(expected), str(e.value)
    with pytest.raises(ValueError, match="`allow_mixed_grids=True`"):
        report.write_report(path, str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()
    result = report.write_report(path, str(tmp_path / "r"), min_pairs=3,
                                 allow_mixed_grids=True)
    assert "these trials come from 2 different grids" in result["markdown"]
    assert len(result["sweep"].trials) == 12
    # The binary: exit 2, the grids named, nothing written.
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.report", f"--sweep_dir={path}",
         f"--output_dir={tmp_path / 'r2'}"], cwd=root, capture_output=True,
        text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"keras-egf-report: error: {expected}" in proc.stderr
    assert not (tmp_path / "r2").exists()


def test_sweeps_of_one_grid_with_other_seeds_are_one_experiment(tmp_path):
    seeds = {"name": "smoke-more-seeds", "fixed": {"epochs": 3},
             "grid": {"optimizer": ["sgd", "adam"], "seed": [1, 2]},
             "objective": "dense_test_accuracy", "pack": 4}
    sweep = report.load_sweep(_two_grid_sweeps(tmp_path, seeds))
    assert len(sweep.trials) == 12 and sweep.grids == []
