import json
import os
import subprocess
import sys

import pytest

from keras_egf import grid as grid_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_grids_are_valid():
    smoke = grid_lib.load_grid(os.path.join(ROOT, "configs/grids/smoke.json"))
    assert smoke.size() == 36
    paper = grid_lib.load_grid(os.path.join(ROOT, "configs/grids/paper_fashion_mnist.json"))
    # SC, SC_BN, DA_SC_BN, DA_L2_SC_BN at depth 1 build the networks of
    # NR, BN, DA_BN, DA_L2_BN: those 4 x 1 depth points are left out.
    full = 5 * 10 * 3 * 5 * 6 * 2
    skipped = 5 * 4 * 1 * 5 * 6 * 2
    assert paper.size() == full - skipped == len(paper.points())
    assert len(paper.skipped_points()) == skipped
    assert all(p["depth"] == 1 and "SC" in p["regularizers"]
               for p in paper.skipped_points())
    assert not any(p["depth"] == 1 and "SC" in p["regularizers"]
                   for p in paper.points())
    config = paper.config({"optimizer": "adam", "regularizers": "DA_L2_SC_BN",
                           "depth": 2, "dense_width": 308, "activation": "srelu",
                           "learning_rate": 0.1})
    assert config.regularizers == ("da", "l2", "sc", "bn")


@pytest.mark.parametrize("spec, named", [
    ({"name": "x", "grid": {"optimizer": ["adam"]}, "bogus": 1}, "'bogus'"),
    ({"name": "x", "grid": {"optimiser": ["adam"]}}, "'optimiser'"),
    ({"name": "x", "grid": {"optimizer": []}}, "grid.optimizer"),
    ({"name": "x", "grid": {"depth": ["2"]}}, "grid.depth"),
    ({"name": "x", "fixed": {"epochs": 1.5}, "grid": {"depth": [1]}}, "fixed.epochs"),
    ({"name": "x", "grid": {"optimizer": ["adamax"]}}, "optimizer='adamax'"),
    ({"name": "x", "grid": {"regularizers": ["DA_XX"]}}, "regularizers="),
    ({"grid": {"depth": [1]}}, "'name'"),
])
def test_bad_grids_name_the_key(spec, named):
    with pytest.raises(ValueError, match=named):
        grid_lib.parse_grid(spec)


def test_grid_regularizers_take_the_binarys_comma_lists_too():
    grid = grid_lib.parse_grid({"name": "x", "fixed": {"depth": 2},
                                "grid": {"regularizers": ["l2,bn", "SC_BN", "nr"]}})
    assert [grid.config(p).regularizers for p in grid.points()] == [
        ("l2", "bn"), ("sc", "bn"), ()]
    # sc at depth 1 is left out whichever spelling says it
    shallow = grid_lib.parse_grid({"name": "x", "fixed": {"depth": 1},
                                   "grid": {"regularizers": ["sc,bn", "BN"]}})
    assert shallow.points() == [{"regularizers": "BN"}]


def test_bad_grid_file_fails_before_training(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "grid": {"widht": [1]}}))
    proc = subprocess.run([sys.executable, "-m", "trainers.sweep", f"--grid={bad}",
                           f"--output_dir={tmp_path / 'out'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "'widht'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_two_trial_sweep_keeps_results_per_trial(tmp_path):
    spec = {"name": "t", "fixed": {"dataset": "mnist5k", "dense_width": 8,
                                   "epochs": 1, "egf_points": 1, "egf_batches": 1,
                                   "batch_size": 512},
            "grid": {"optimizer": ["sgd", "adam"]}}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "trainers.sweep", f"--grid={path}",
                           f"--output_dir={out}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[2/2]" in proc.stdout
    results = sorted(out.glob("trial_*/results.json"))
    assert len(results) == 2
    optimizers = sorted(json.loads(p.read_text())["config"]["optimizer"] for p in results)
    assert optimizers == ["adam", "sgd"]
    first = results[0].read_bytes()
    # Re-running the same command resumes: nothing is re-run.
    again = subprocess.run([sys.executable, "-m", "trainers.sweep", f"--grid={path}",
                            f"--output_dir={out}"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0
    assert "[" not in again.stdout.split("trials into")[-1]
    assert results[0].read_bytes() == first


def test_skip_connections_at_depth_one_are_left_out():
    spec = {"name": "x", "fixed": {"depth": 1},
            "grid": {"regularizers": ["NR", "SC", "BN", "SC_BN"]}}
    grid = grid_lib.parse_grid(spec)
    assert grid.points() == [{"regularizers": "NR"}, {"regularizers": "BN"}]
    assert grid.size() == 2
    with pytest.raises(ValueError, match="every grid point has skip connections at depth 1"):
        grid_lib.parse_grid({"name": "x", "fixed": {"depth": 1},
                             "grid": {"regularizers": ["SC"]}})
    deep = grid_lib.parse_grid({"name": "x", "grid": {"depth": [1, 2],
                                                      "regularizers": ["NR", "SC"]}})
    assert deep.points() == [{"depth": 1, "regularizers": "NR"},
                             {"depth": 2, "regularizers": "NR"},
                             {"depth": 2, "regularizers": "SC"}]


def test_cnn_grid_has_an_arch_axis_and_every_point_validates():
    grid = grid_lib.load_grid(os.path.join(ROOT, "configs/grids/cnn_cifar10.json"))
    assert grid.size() == 4 * 4 * 2 * 2 == len(grid.points())
    for point in grid.points():
        config = grid.config(point)
        assert config.arch == "cnn" and config.dataset == "cifar10"
        assert config.dense_widths() == [c * point["widen_factor"]
                                         for c in (32, 64, 64, 128, 128)]
    with pytest.raises(ValueError, match="sc"):  # no skip option on the CNN
        grid_lib.parse_grid({"name": "x", "grid": {"arch": ["cnn"],
                                                   "regularizers": ["SC"]}})
    # Skip connections at depth 1 are only an MLP's duplicate cells.
    wrn = grid_lib.parse_grid({"name": "x", "fixed": {"depth": 1},
                               "grid": {"arch": ["mlp", "wrn"], "regularizers": ["NR", "BN"]}})
    assert len(wrn.points()) == 4
