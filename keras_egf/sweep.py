"""The grid sweep: a keras_tuner.Tuner whose trial is one SC-SDC comparison.

Each trial runs `experiment.run_comparison` (the training binary's code
path) into the trial's folder under the tuner directory, so its
results.json and TensorBoard logs stay with the oracle's own trial state.

The oracle is Keras Tuner's GridSearch oracle, handing out the grid's points
in file order, each exactly once, to however many workers ask (see
`GridPointOracle`). Keras Tuner owns which points ran: re-running the same
command resumes. Finished trials are not re-run; a trial interrupted by
Ctrl-C or SIGKILL is still "ongoing" in the oracle's saved state, so the
oracle re-queues it on reload and it is re-run from scratch (its folder's
partial TensorBoard logs are cleared first). results.json is only ever
written whole (temp file + rename). A finished trial whose results.json was
later deleted, truncated or corrupted (or whose whole folder was deleted) is
found on the next run (`requeue_broken_trials`) and re-run, as is a trial
that failed (its folder could not be written, say); the other trials'
files are not touched.
"""

import json
import os
import shutil
import time

import keras_tuner

from keras_egf import experiment
from keras_egf import files
from keras_egf import interrupts
from keras_egf import report
from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS

METRICS = tuple(f"{model}_{name}" for model in ("sparse", "dense")
                for name in ("test_accuracy", "test_loss") + tuple(
                    f"average_{m}" for m in GRADIENT_FLOW_METRICS)
                ) + ("sparse_minus_dense_accuracy",)
GRID_FILE = files.GRID_FILE


def trial_metrics(results):
    """Metrics dict of one comparison.

    A diverged model counts as accuracy 0 and loss 1e9 for the tuner's
    objective only; the report reads results.json and leaves it out.
    """
    out = {}
    for name in ("sparse", "dense"):
        r = results["models"].get(name, {})
        acc = r.get("test_accuracy")
        loss = r.get("test_loss")
        out[f"{name}_test_accuracy"] = float(acc) if acc is not None else 0.0
        out[f"{name}_test_loss"] = float(loss) if loss is not None else 1e9
        average = r.get("average") or {}
        for measure in GRADIENT_FLOW_METRICS:
            value = average.get(measure)
            out[f"{name}_average_{measure}"] = float(value) if value is not None else 0.0
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


def write_hparams_config(log_dir, grid):
    """The HParams dashboard's experiment: the grid's axes and the metrics."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    hparams = [hp_api.HParam(key, hp_api.Discrete(
        [str(v) if isinstance(v, bool) else v for v in values]))
        for key, values in grid.axes.items()]
    metrics = [hp_api.Metric(name) for name in METRICS]
    with tf.summary.create_file_writer(log_dir).as_default():
        hp_api.hparams_config(hparams=hparams, metrics=metrics)


class GridPointOracle(keras_tuner.oracles.GridSearchOracle):
    """The GridSearch oracle over a fixed list of grid points.

    Keras Tuner's GridSearchOracle derives each new point from a *finished*
    trial, so with several workers all but one wait (IDLE) until trials end.
    A Cartesian grid is known up front: this oracle hands out the first point
    not yet tried, in grid order. Tried points are the oracle's own
    `_tried_so_far` record (saved with its state), so each point runs once
    across workers and across resumes; interrupted trials come back through
    Keras Tuner's retry queue.
    """

    def __init__(self, points, **kwargs):
        super().__init__(**kwargs)
        self._points = [dict(p) for p in points]

    def populate_space(self, trial_id):
        for values in self._points:
            if not self._duplicate(values):
                return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING,
                        "values": dict(values)}
        return {"status": keras_tuner.engine.trial.TrialStatus.STOPPED,
                "values": None}


def results_problem(trial_dir, config):
    """Why `trial_dir`'s results.json is not a finished result of `config`
    (a short text), or None when it is one."""
    return _checked_results(trial_dir, config)[1]


def _checked_results(trial_dir, config):
    """(results, None) when trial_dir/results.json is a finished result of
    `config`, else (None, why): the file is read once."""
    path = os.path.join(trial_dir, "results.json")
    try:
        results = files.read_json(path)
    except ValueError as e:
        return None, "results.json " + str(e).split(": ", 1)[-1]
    why = _results_mismatch(results, config)
    return (None, why) if why else (results, None)


def _results_mismatch(results, config):
    """Why a read results dict is not a finished result of `config`."""
    models = results.get("models") if isinstance(results, dict) else None
    if not isinstance(models, dict) or not isinstance(results.get("config"), dict):
        return "results.json is not a keras-egf results file"
    expected = config.to_dict()
    saved = results["config"]
    defaults = experiment.ComparisonConfig().to_dict()
    # A key an older keras-egf did not write counts as its default value.
    if any(saved.get(k, defaults[k]) != v for k, v in expected.items()):
        return "results.json holds another configuration"
    names = ("sparse", "dense") if config.models == "both" else (config.models,)
    for name in names:
        r = models.get(name)
        if not isinstance(r, dict) or "test_accuracy" not in r:
            return f"results.json has no {name} model results"
    return None


def _finished_results(trial_dir, config):
    """The trial's results.json if an earlier run finished this same config
    (killed after writing it, before the oracle recorded the trial)."""
    return _checked_results(trial_dir, config)[0]


def requeue_broken_trials(tuner):
    """Sends finished trials whose results are missing or unreadable, and
    failed trials, back to the oracle's queue; returns [(trial_id, why)].
    Good trials are not touched. Runs where the oracle lives (one process,
    or the chief).
    """
    from keras_tuner.engine import trial as trial_module

    oracle = tuner.oracle
    by_hash = {oracle._compute_values_hash(g[0]): g[0] for g in tuner.groups}
    requeued = []
    for trial_id in sorted(set(oracle._id_to_hash) | set(oracle.trials)):
        trial = oracle.trials.get(trial_id)
        if trial is None:  # its folder (and trial.json) was deleted
            values = by_hash.get(oracle._id_to_hash.get(trial_id))
            if values is None:
                continue
            hp = oracle.hyperparameters.copy()
            hp.values = dict(values)
            trial = trial_module.Trial(hyperparameters=hp, trial_id=trial_id)
            oracle.trials[trial_id] = trial
            why = "trial folder missing"
        elif trial.status in (trial_module.TrialStatus.FAILED,
                              trial_module.TrialStatus.INVALID):
            why = "failed in an earlier run"
        elif trial.status != trial_module.TrialStatus.COMPLETED:
            continue  # interrupted ones are re-queued by Keras Tuner itself
        else:
            values = {k: trial.hyperparameters.get(k) for k in tuner.grid.axes}
            problems = [results_problem(d, c) for _, c, d in tuner.trial_points(
                values, tuner.get_trial_dir(trial_id))]
            why = next((p for p in problems if p), None)
            if why is None:
                continue
        trial.status = trial_module.TrialStatus.IDLE
        if trial_id in oracle.end_order:
            oracle.end_order.remove(trial_id)
        if trial_id not in oracle._retry_queue:
            oracle._retry_queue.append(trial_id)
        oracle._save_trial(trial)
        requeued.append((trial_id, why))
    if requeued:
        oracle.save()
    return requeued


def _point_key(values):
    return tuple(sorted((k, repr(v)) for k, v in values.items()))


def _clear_trial_dir(trial_dir):
    """Clears what an interrupted earlier run of this trial left behind."""
    shutil.rmtree(os.path.join(trial_dir, "tensorboard"), ignore_errors=True)
    for name in ("results.json", "comparison.png"):
        path = os.path.join(trial_dir, name)
        if os.path.exists(path):
            os.remove(path)


def check_same_grid(project_dir, grid, pack=1):
    """Records the grid (and a pack size > 1) in a new sweep; refuses to
    resume with another one."""
    path = os.path.join(project_dir, GRID_FILE)
    spec = grid.to_dict() if pack == 1 else {**grid.to_dict(), "pack": pack}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if saved != spec:
            raise ValueError(
                f"output_dir={project_dir!r} holds a sweep of a different grid "
                f"(saved in {path}): resume with the same grid, --seeds and --pack, or "
                "pass --overwrite, or choose a new --output_dir")
        return
    os.makedirs(project_dir, exist_ok=True)
    files.write_json_atomic(path, spec)


def mirrored_strategy():
    """tf.distribute.MirroredStrategy over the visible GPUs, or None (< 2)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < 2:
        return None
    return tf.distribute.MirroredStrategy([g.name for g in gpus])


class SCSDCTuner(keras_tuner.Tuner):
    """Grid search over SC-SDC comparisons, one sparse/dense pair a trial.

    Args:
        grid: a validated `keras_egf.grid.Grid`.
        max_trials: run at most this many grid points (default: all).
        progress: called with one line per finished trial.
        strategy: a tf.distribute strategy each trial runs under, or None.
        pack: train up to this many compatible grid points as one trial
            (`keras_egf.packing`; their shared settings: `pack_key`; a point
            packing does not support runs alone). A trial's first point
            writes into the trial's folder, the others into its point_<i>/
            folders; max_trials then counts trials.
        allow_small_dataset: train points whose batch is larger than the
            training set (`experiment.check_trainable`).
        **kwargs: `keras_tuner.Tuner` arguments (directory, project_name,
            overwrite, ...).

    `failed`: {trial id: why} of the trials this process ran that failed
    (Keras Tuner records them and goes on; a later run re-queues them).
    """

    def __init__(self, grid, max_trials=None, progress=None, strategy=None,
                 pack=1, allow_small_dataset=False, **kwargs):
        self.grid = grid
        self.allow_small_dataset = allow_small_dataset
        self.failed = {}
        self.progress = progress or (lambda line: print(line, flush=True))
        self.strategy = strategy
        self.pack = pack
        if pack > 1:
            from keras_egf import packing

            if strategy is not None:
                raise ValueError(f"pack={pack}: packed trials run on one device "
                                 "(drop --mirrored)")
            self.groups = packing.group_points(grid.points(), grid.config, pack)
        else:
            self.groups = [[p] for p in grid.points()]
        # The oracle hands out one point per group (its first): a trial
        # trains the whole group.
        self._group_of = {_point_key(g[0]): g for g in self.groups}
        leaders = [g[0] for g in self.groups]
        total = len(leaders) if max_trials is None else min(max_trials, len(leaders))
        self.total_trials = total
        oracle = GridPointOracle(
            leaders,
            objective=keras_tuner.Objective(grid.objective, "max"),
            max_trials=total, hyperparameters=_hyperparameters(grid))
        super().__init__(oracle=oracle, **kwargs)
        self._started = time.perf_counter()
        self._finished_here = 0

    def trial_points(self, values, trial_dir):
        """[(point values, config, output folder)] a trial trains: its own
        point into `trial_dir`, the rest of its pack into
        `trial_dir/point_<i>`."""
        group = self._group_of.get(_point_key(values), [values])
        return [(p, self.grid.config(p),
                 trial_dir if i == 0 else os.path.join(trial_dir, f"point_{i}"))
                for i, p in enumerate(group)]

    def run_trial(self, trial, *args, **kwargs):
        out = self.get_trial_dir(trial.trial_id)
        try:
            return self._train_trial(trial, out)
        except Exception as e:
            # Keras Tuner records an Exception as a failed trial and goes
            # on; a Ctrl-C that TensorFlow re-raised as one must stop.
            if interrupts.requested():
                raise KeyboardInterrupt from e
            self.failed[trial.trial_id] = f"{out}: {type(e).__name__}: {e}"
            raise

    def _train_trial(self, trial, out):
        values = {k: trial.hyperparameters.get(k) for k in self.grid.axes}
        points = self.trial_points(values, out)
        finished = [_finished_results(d, c) for _, c, d in points]
        if any(r is None for r in finished):
            for _, _, d in points:  # a re-queued interrupted trial starts over
                _clear_trial_dir(d)
            if len(points) > 1:
                from keras_egf import packing

                finished = packing.run_packed([c for _, c, _ in points],
                                              [d for _, _, d in points])
            else:
                finished = [experiment.run_comparison(
                    points[0][1], out, verbose=0, plot=False,
                    strategy=self.strategy,
                    allow_small_dataset=self.allow_small_dataset)]
        for (point, _, d), results in zip(points, finished):
            hparams_dir = os.path.join(d, "tensorboard", "hparams")
            if not os.path.isdir(hparams_dir):
                _write_hparams(hparams_dir, point, trial_metrics(results))
        return trial_metrics(finished[0])

    def finished_trials(self):
        """Trial folders with a readable results.json (shared by all
        workers)."""
        def readable(name):
            try:
                report.read_results(os.path.join(self.project_dir, name,
                                                 "results.json"))
            except ValueError:
                return False
            return True

        return sorted(name for name in os.listdir(self.project_dir)
                      if name.startswith("trial_") and readable(name))

    def finished_versions(self):
        """{keras_egf version: n} of the finished results (packed points
        included; "unknown" if unrecorded), as the report counts them."""
        return report.load_sweep(self.project_dir).library_versions()

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self._finished_here += 1
        done = len(self.finished_trials())
        elapsed = time.perf_counter() - self._started
        eta = elapsed / self._finished_here * max(0, self.total_trials - done)
        values = dict(trial.hyperparameters.values)
        results_path = os.path.join(self.get_trial_dir(trial.trial_id), "results.json")

        def describe(name):
            try:
                with open(results_path) as f:
                    r = json.load(f)["models"][name]
            except (OSError, KeyError, ValueError):
                return "failed"
            if r.get("diverged"):
                return "diverged"
            return f"{r['test_accuracy']:.4f}"

        packed = len(self._group_of.get(_point_key(values), [values])) - 1
        self.progress(
            f"[{done}/{self.total_trials}] trial {trial.trial_id} {values} "
            f"sparse acc {describe('sparse')} dense acc {describe('dense')}"
            + (f" (+{packed} packed point(s) in point_*/)" if packed else "")
            + f" ETA {eta / 60:.1f} min")

    def save_model(self, trial_id, model, step=0):
        pass  # trials save results.json, not models

    def load_model(self, trial):
        raise NotImplementedError("SC-SDC trials keep results.json, not models.")
