"""The writing side of keras_egf.results: what a run writes passes the
reader's check, and test metrics of diverged models are null."""

import numpy as np

from keras_egf import experiment
from keras_egf import results
from keras_egf.config import ComparisonConfig


def _result(diverged=False, epochs=3):
    return {"diverged": diverged, "diverged_epoch": 1 if diverged else None,
            "epochs_run": epochs}


def test_add_test_metrics():
    ok = results.add_test_metrics(_result(), 0.5, 0.75, 1.25)
    assert (ok["test_loss"], ok["test_accuracy"], ok["eval_time_s"]) == (0.5, 0.75, 1.25)
    bad = results.add_test_metrics(_result(diverged=True), None, None)
    assert bad["test_loss"] is None and bad["test_accuracy"] is None
    assert bad["diverged_epoch"] == 1
    # a non-finite test loss counts as diverged in the last epoch run
    nan = results.add_test_metrics(_result(), float("nan"), 0.1)
    assert nan["diverged"] and nan["diverged_epoch"] == 2 and nan["test_loss"] is None


def test_what_a_run_writes_passes_the_readers_check():
    config = ComparisonConfig(dataset="mnist5k", depth=1, dense_width=4,
                              sparse_width_multiplier=2, epochs=1, egf_points=1,
                              batch_size=128).validate()
    ds = experiment.datasets_for(config)
    pair = experiment.build_pair(config, ds)
    written = results.results_header(config, ds)
    assert written["gradient_flow_scales"] == results.GRADIENT_FLOW_SCALES
    assert set(written["versions"]) >= {"python", "tensorflow", "keras", "keras_egf"}
    for name, model in experiment.models_of(config, pair):
        entry = results.model_result(model, {"loss": [0.9]}, [], {}, False, None,
                                     None, 0, 1.0)
        written["models"][name] = results.add_test_metrics(entry, 0.8, 0.6, 0.1)
    assert results.check(written) is written
    sparse = written["models"]["sparse"]
    assert sparse["widths"] == [8, 10] and sparse["epochs_run"] == 1
    assert set(sparse["mask_sha256"]) == set(results.mask_digests(pair.sparse))
    assert np.sum(list(sparse["active_weights"].values())) == np.sum(
        list(written["models"]["dense"]["active_weights"].values()))
