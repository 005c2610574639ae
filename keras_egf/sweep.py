"""The grid sweep: a keras_tuner.Tuner whose trial is one SC-SDC comparison.

Each trial runs `experiment.run_comparison` (the training binary's code
path) into the trial's folder under the tuner directory, so its
results.json and TensorBoard logs stay with the oracle's own trial state.
Keras Tuner's GridSearch oracle owns which points ran: re-running the same
command resumes (finished trials are not re-run; the oracle re-queues the
interrupted one, which starts from scratch).
"""

import os
import time

import keras_tuner

from keras_egf import experiment

METRICS = ("sparse_test_accuracy", "dense_test_accuracy", "sparse_test_loss",
           "dense_test_loss", "sparse_minus_dense_accuracy",
           "sparse_average_egf_2", "dense_average_egf_2")


def trial_metrics(results):
    """Metrics dict of one comparison (diverged models count as 0 accuracy)."""
    out = {}
    for name in ("sparse", "dense"):
        r = results["models"].get(name, {})
        acc = r.get("test_accuracy")
        loss = r.get("test_loss")
        out[f"{name}_test_accuracy"] = float(acc) if acc is not None else 0.0
        out[f"{name}_test_loss"] = float(loss) if loss is not None else 1e9
        out[f"{name}_average_egf_2"] = float((r.get("average") or {}).get("egf_2") or 0.0)
    out["sparse_minus_dense_accuracy"] = (
        out["sparse_test_accuracy"] - out["dense_test_accuracy"])
    return out


def _hyperparameters(grid):
    hp = keras_tuner.HyperParameters()
    for key, values in grid.axes.items():
        hp.Choice(key, values, ordered=False)
    return hp


def _write_hparams(log_dir, values, metrics):
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    with tf.summary.create_file_writer(log_dir).as_default():
        hp_api.hparams({k: (v if not isinstance(v, bool) else str(v))
                        for k, v in values.items()})
        for name, value in metrics.items():
            tf.summary.scalar(name, value, step=0)


class SCSDCTuner(keras_tuner.Tuner):
    """Grid search over SC-SDC comparisons."""

    def __init__(self, grid, max_trials=None, progress=print, **kwargs):
        self.grid = grid
        self.progress = progress
        total = grid.size() if max_trials is None else min(max_trials, grid.size())
        self.total_trials = total
        oracle = keras_tuner.oracles.GridSearchOracle(
            objective=keras_tuner.Objective(grid.objective, "max"),
            max_trials=total, hyperparameters=_hyperparameters(grid))
        super().__init__(oracle=oracle, **kwargs)
        self._started = time.perf_counter()
        self._finished_here = 0

    def run_trial(self, trial, *args, **kwargs):
        values = {k: trial.hyperparameters.get(k) for k in self.grid.axes}
        config = self.grid.config(values)
        out = self.get_trial_dir(trial.trial_id)
        results = experiment.run_comparison(config, out, verbose=0, plot=False)
        metrics = trial_metrics(results)
        _write_hparams(os.path.join(out, "tensorboard", "hparams"), values, metrics)
        return metrics

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self._finished_here += 1
        done = sum(1 for t in self.oracle.trials.values()
                   if t.status in ("COMPLETED", "INVALID", "FAILED"))
        elapsed = time.perf_counter() - self._started
        eta = elapsed / self._finished_here * max(0, self.total_trials - done)
        values = dict(trial.hyperparameters.values)

        def best(name):
            try:
                return f"{trial.metrics.get_last_value(name):.4f}"
            except (KeyError, TypeError, ValueError):
                return "n/a"

        self.progress(
            f"[{done}/{self.total_trials}] trial {trial.trial_id} {values} "
            f"sparse acc {best('sparse_test_accuracy')} dense acc "
            f"{best('dense_test_accuracy')} ETA {eta / 60:.1f} min", )

    def save_model(self, trial_id, model, step=0):
        pass  # trials save results.json, not models

    def load_model(self, trial):
        raise NotImplementedError("SC-SDC trials keep results.json, not models.")
