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


def _sweep_binary(grid_path, out, timeout=120):
    return subprocess.run([sys.executable, "-m", "trainers.sweep", f"--grid={grid_path}",
                           f"--output_dir={out}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.parametrize("axis, values, named", [
    # The oracle ran 'sgd' once: "Done: 1/2" on every run, exit 0.
    ("optimizer", ["sgd", "adam", "sgd"], "grid.optimizer: 'sgd' is listed twice"),
    # Two labels of no regulariser: the same pair trained twice, counted twice.
    ("regularizers", ["NR", "BN", ""], "grid.regularizers: 'NR' and '' are one setting"),
    # The two vocabularies, and the order of the names, spell one setting.
    ("regularizers", ["l2,bn", "BN_L2"], "grid.regularizers: 'l2,bn' and 'BN_L2' are one setting"),
    ("regularizers", ["BN", "bn"], "grid.regularizers: 'BN' and 'bn' are one setting"),
    ("learning_rate", [0.1, 1, 1.0], "grid.learning_rate: 1 and 1.0 are one setting"),
])
def test_an_axis_that_lists_one_setting_twice_is_refused(tmp_path, axis, values, named):
    spec = {"name": "x", "fixed": {"depth": 2}, "grid": {axis: values}}
    with pytest.raises(ValueError) as e:
        grid_lib.parse_grid(spec, source="g.json")
    assert str(e.value).startswith("g.json." + named), str(e.value)
    assert str(e.value).endswith("list each setting once")
    distinct = list(dict.fromkeys(values))
    assert len(distinct) < len(values) or axis in ("regularizers", "learning_rate")


def test_the_sweep_refuses_a_repeated_value_before_training(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"name": "x", "fixed": {"epochs": 1, "dense_width": 8},
                                "grid": {"optimizer": ["sgd", "sgd"]}}))
    proc = _sweep_binary(path, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (f"keras-egf-sweep: error: {path}.grid.optimizer: 'sgd' is listed "
            "twice") in proc.stderr
    assert "Traceback" not in proc.stderr and "Done" not in proc.stdout
    assert not (tmp_path / "out").exists()


def test_a_key_given_twice_in_a_grid_file_is_refused(tmp_path):
    path = tmp_path / "g.json"
    path.write_text('{"name": "x", "grid": {"optimizer": ["sgd"], '
                    '"optimizer": ["adam"]}}')  # json would keep ["adam"] only
    with pytest.raises(ValueError) as e:
        grid_lib.load_grid(str(path))
    assert str(e.value).startswith(
        f"grid={str(path)!r}: key 'optimizer' is given twice in one object "
        "(['sgd'], then ['adam'])"), str(e.value)
    path.write_text('{"name": "x", "name": "y", "grid": {"depth": [1]}}')
    with pytest.raises(ValueError, match="key 'name' is given twice .*'x', then 'y'"):
        grid_lib.load_grid(str(path))


def test_grid_files_that_are_not_utf8_or_too_deep_are_named(tmp_path):
    """Issue 27.9: the UTF-8 error did not name the file, a deep file gave a
    RecursionError traceback; both exit 2 naming the file."""
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"name": "caf\xe9", "grid": {"depth": [1]}}'.encode("latin-1"))
    with pytest.raises(ValueError) as e:
        grid_lib.load_grid(str(latin))
    assert str(e.value) == (f"grid={str(latin)!r}: not UTF-8 text (byte 0xe9 at "
                            "offset 13); save the grid as UTF-8")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match=f"^grid={str(deep)!r}: nested too deeply"):
        grid_lib.load_grid(str(deep))
    for path in (latin, deep):
        proc = _sweep_binary(path, tmp_path / "out")
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"keras-egf-sweep: error: grid={str(path)!r}: " in proc.stderr
        assert "Traceback" not in proc.stderr
    # A BOM (some editors write one) is UTF-8 all the same.
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"name": "x", "grid": {"depth": [1, 2]}}).encode())
    assert grid_lib.load_grid(str(bom)).size() == 2


def test_a_million_point_grid_is_validated_by_axis_in_seconds():
    """Issue 27.5: a 10^6-point grid printed nothing for 211 s while every
    point's config was built and validated."""
    import time

    with open(os.path.join(ROOT, "configs/grids/paper_fashion_mnist.json")) as f:
        spec = json.load(f)
    del spec["fixed"]["seed"]
    spec["grid"]["seed"] = list(range(112))  # 7,800 points x 112 seeds
    start = time.perf_counter()
    grid = grid_lib.parse_grid(spec, source="big.json")
    assert time.perf_counter() - start < 2.0
    assert len(grid.all_points()) == 9000 * 112 > 10**6
    # A bad combination anywhere is still found, and named.
    spec["grid"]["dense_width"].append(4000)  # > sparse_width 3076
    with pytest.raises(ValueError, match="big.json: grid point .*'dense_width': "
                       "4000.*`sparse_width` must be an integer >= dense_width="
                       "4000.*Received: sparse_width=3076"):
        grid_lib.parse_grid(spec, source="big.json")
    spec["grid"]["dense_width"].pop()
    spec["grid"]["seed"].append(-1)
    with pytest.raises(ValueError, match="big.json.grid.seed: `seed` must be "
                       ".*Received: seed=-1"):
        grid_lib.parse_grid(spec, source="big.json")


@pytest.mark.parametrize("fixed, axes", [
    ({"sparse_width": 40}, {"dense_width": [8, 40, 64], "arch": ["mlp", "cnn"]}),
    ({}, {"arch": ["mlp", "wrn"], "wrn_depth": [16, 17], "depth": [1, 2]}),
    ({}, {"epochs": [1, 3], "egf_points": [None, 2, 3], "optimizer": ["sgd", "adam"]}),
    ({"depth": 1}, {"regularizers": ["SC", "BN"], "arch": ["mlp", "cnn"]}),
    ({}, {"regularizers": ["SC", "BN"], "arch": ["cnn", "mlp"], "depth": [1, 2]}),
    ({}, {"learning_rate": [0.1, -1.0], "epochs": [1, 2]}),
])
def test_validating_by_axis_accepts_exactly_the_grids_whose_points_all_validate(fixed, axes):
    grid = grid_lib.Grid("x", fixed, axes)
    every_point_valid = bool(grid.points())
    for point in grid.points():
        try:
            grid.config(point)
        except ValueError:
            every_point_valid = False
    try:
        grid_lib.parse_grid({"name": "x", "fixed": fixed, "grid": axes})
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == every_point_valid


def test_configs_over_gives_one_config_per_combination_that_runs():
    grid = grid_lib.parse_grid({"name": "x", "grid": {
        "regularizers": ["SC", "NR"], "depth": [1, 2], "batch_size": [16, 32],
        "optimizer": ["sgd", "adam"]}})
    got = grid.configs_over(("batch_size", "regularizers"))
    assert [(p["batch_size"], p["regularizers"]) for p, _ in got] == [
        (16, "SC"), (32, "SC"), (16, "NR"), (32, "NR")]
    # SC runs at depth 2 only: its config is a point that runs.
    assert all(p in grid.points() and c == grid.config(p) for p, c in got)
