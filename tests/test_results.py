"""keras_egf.results: the one check of a results.json (no training), and
the writing side: what a run writes passes the reader's check, and test
metrics of diverged models are null."""

import json

import numpy as np
import pytest

from keras_egf import experiment
from keras_egf import results
from keras_egf.config import ComparisonConfig


def _valid():
    return {"config": {"optimizer": "adam"}, "versions": {"keras_egf": "0.3.0"},
            "dataset": {"num_classes": 10},
            "models": {"sparse": {"diverged": False, "test_accuracy": 0.5,
                                  "test_loss": 1.2,
                                  "average": {"gf_1": 2.0, "egf_2": None}},
                       "dense": {"diverged": True, "diverged_epoch": 0,
                                 "test_accuracy": None, "test_loss": None,
                                 "average": {"gf_1": None}}}}


def test_a_file_a_run_writes_is_valid(tmp_path):
    assert results.problems(_valid()) == []
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_valid()))
    assert results.read(str(path)) == _valid()


@pytest.mark.parametrize("change, problem", [
    (lambda r: r["models"]["sparse"].update(test_accuracy="0.5"),
     "models.sparse.test_accuracy: '0.5' is not a finite number"),
    (lambda r: r["models"]["sparse"].update(test_accuracy=None),
     "models.sparse.test_accuracy: None is not a finite number"),
    (lambda r: r["models"]["sparse"].pop("test_loss"),
     "models.sparse.test_loss: missing"),
    (lambda r: r["models"]["sparse"].update(test_accuracy=1.5),
     "models.sparse.test_accuracy: 1.5 is not in [0, 1]"),
    (lambda r: r["models"]["sparse"].update(test_accuracy=True),
     "models.sparse.test_accuracy: True is not a finite number"),
    (lambda r: r["models"]["sparse"].update(diverged="no"),
     "models.sparse.diverged: 'no' is not true or false"),
    (lambda r: r["models"]["dense"].update(test_loss=0.3),
     "models.dense.test_loss: 0.3 on a diverged model (expected null)"),
    (lambda r: r["models"]["sparse"]["average"].update(gf_1="big"),
     "models.sparse.average.gf_1: 'big' is not a number or null"),
    (lambda r: r["models"].update(extra={}), "models.extra: not a model name"),
    (lambda r: r.update(models={}), "models: empty"),
    (lambda r: r.pop("config"), "config: missing"),
    (lambda r: r["dataset"].update(num_classes="10"),
     "dataset.num_classes: '10' is not an integer >= 2"),
])
def test_each_departure_is_named(tmp_path, change, problem):
    bad = _valid()
    change(bad)
    assert any(p.startswith(problem) for p in results.problems(bad)), results.problems(bad)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=f"^{path}: not a keras-egf results file"):
        results.read(str(path))


def test_unreadable_files_are_named(tmp_path):
    path = tmp_path / "results.json"
    with pytest.raises(ValueError, match=f"^{path}: missing"):
        results.read(str(path))
    path.write_text("")
    with pytest.raises(ValueError, match=f"^{path}: not valid JSON"):
        results.read(str(path))
    path.write_text("[1]")
    with pytest.raises(ValueError, match="not a keras-egf results file "
                       r"\(not a JSON object\)"):
        results.read(str(path))


def test_each_refusal_says_its_kind(tmp_path):
    """One error type for every reader: the report tells unreadable from
    invalid files, the sweep says why a file is no finished result."""
    path = tmp_path / "results.json"
    with pytest.raises(results.ResultsError) as e:
        results.read(str(path))
    assert (e.value.kind, e.value.why, e.value.text) == ("unreadable", "missing", "missing")
    path.write_text(json.dumps({**_valid(), "models": {}}))
    with pytest.raises(results.ResultsError) as e:
        results.read(str(path))
    assert (e.value.kind, e.value.why) == ("invalid", "models: empty")
    assert e.value.text == "not a keras-egf results file (models: empty)"
    path.write_text(json.dumps(_valid()))
    with pytest.raises(results.ResultsError, match=r"\(config.dense_width: missing; "
                       "grouped by it\\)$") as e:
        results.read(str(path), ("optimizer", "dense_width"), "grouped by it")
    assert e.value.kind == "invalid"


def test_a_finished_result_is_of_the_same_config_with_each_model(tmp_path):
    config = ComparisonConfig(optimizer="adam")
    stored = {**_valid(), "config": config.to_dict()}
    stored["models"]["dense"] = dict(stored["models"]["sparse"])
    (tmp_path / "results.json").write_text(json.dumps(stored))
    assert results.read_finished(str(tmp_path), config) == stored
    assert results.finished_problem(str(tmp_path), config) is None
    other = ComparisonConfig(optimizer="sgd")
    assert results.finished_problem(str(tmp_path), other) == (
        "results.json holds another configuration")
    del stored["models"]["dense"]
    (tmp_path / "results.json").write_text(json.dumps(stored))
    with pytest.raises(results.ResultsError) as e:
        results.read_finished(str(tmp_path), config)
    assert (e.value.kind, e.value.why) == ("mismatch", "has no dense model results")
    sparse_only = ComparisonConfig(optimizer="adam", models="sparse")
    stored["config"] = sparse_only.to_dict()
    (tmp_path / "results.json").write_text(json.dumps(stored))
    assert results.finished_problem(str(tmp_path), sparse_only) is None
    assert results.finished_problem(str(tmp_path / "none"), config) == (
        "results.json missing")


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
