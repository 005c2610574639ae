"""keras_egf.plots: the comparison figure (the report's figures are drawn
in test_report.py)."""

import os

from keras_egf import files
from keras_egf import plots
from keras_egf.config import ComparisonConfig


def _tiny_config():
    """The configuration of test_train.py's tiny runs (here only its fields
    are drawn, nothing trains)."""
    return ComparisonConfig(dataset="mnist5k", dense_width=12, sparse_width_multiplier=2,
                            epochs=2, egf_points=2, egf_batches=2, batch_size=256, seed=3)


def test_one_epoch_comparison_png_draws_points(tmp_path, monkeypatch):
    result = {"config": _tiny_config().to_dict(), "models": {
        "sparse": {"history": {"accuracy": [0.5], "egf_2": [0.1], "gf_2": [0.3]},
                   "egf_points": [{"epoch": 0, "egf_1": 1.0, "egf_2": 0.1}],
                   "test_accuracy": 0.5}}}
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    path = plots.plot_comparison(result, str(tmp_path / "c.png"))
    lines = [l for ax in figures[0].axes for l in ax.get_lines()]
    assert len(lines) == 5
    # A single point is drawn only by a marker.
    assert all(l.get_marker() not in (None, "None", "") for l in lines)
    assert all(len(l.get_xdata()) == 1 for l in lines)
    assert os.stat(path).st_mode & 0o777 == files.default_file_mode()
