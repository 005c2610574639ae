"""The SC-SDC tuner: a Keras Tuner `BaseTuner` whose trial is one
sparse/dense comparison (or a pack of them).

It is a `keras_tuner.engine.base_tuner.BaseTuner`, not a
`keras_tuner.Tuner`: a trial builds no hypermodel and fits no Keras model
of Keras Tuner's, so `Tuner`'s model building, fitting, checkpoints and
epoch hooks would go unused. The hooks
it fills: `run_trial` (train the trial's points, return their metrics),
`save_model`/`load_model` (trials keep results.json, not models),
`pre_create_trial`/`on_trial_begin`/`on_trial_end` (waiting workers,
heartbeats, the progress line), `save`/`reload` (state written whole;
rebuilt when damaged), `search` (the chief serves) and one private one,
`_run_and_update_trial`, so that a worker that loses its chief stops
instead of marking the trial failed (Keras Tuner 1.4.8, as
`keras_egf.sweep.oracle`, where every use of its private state is).
"""

import json
import os
import shutil
import time

import keras_tuner
from keras_tuner.engine import base_tuner

from keras_egf import distributed
from keras_egf import experiment
from keras_egf import files
from keras_egf import interrupts
from keras_egf import packing
from keras_egf import report
from keras_egf import results as results_lib
from keras_egf import validation
from keras_egf.sweep import oracle as oracle_lib
from keras_egf.sweep import repair
from keras_egf.sweep.hparams import hyperparameters
from keras_egf.sweep.hparams import trial_metrics
from keras_egf.sweep.hparams import write_hparams

IDLE_POLL_S = 2.0  # a waiting worker asks the chief again this often (at most)


def point_key(values):
    """A hashable key of a grid point's values."""
    return tuple(sorted((k, repr(v)) for k, v in values.items()))


def clear_trial_dir(trial_dir):
    """Clears what an interrupted earlier run of this trial left behind."""
    shutil.rmtree(os.path.join(trial_dir, "tensorboard"), ignore_errors=True)
    for name in ("results.json", "comparison.png"):
        path = os.path.join(trial_dir, name)
        if os.path.exists(path):
            os.remove(path)


def _readable(path):
    """True when `path` is a valid results.json (`keras_egf.results.read`)."""
    try:
        results_lib.read(path)
    except ValueError:
        return False
    return True


def _describe(results, name):
    """A model's test accuracy in the progress line ("failed", "diverged")."""
    model = (results or {}).get("models", {}).get(name)
    if model is None:
        return "failed"
    if model.get("diverged"):
        return "diverged"
    return f"{model['test_accuracy']:.4f}"


class SCSDCTuner(base_tuner.BaseTuner):
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
        heartbeat_s, worker_timeout_s, chief_timeout_s: chief and workers
            (`keras_egf.distributed`): a worker tells the chief every
            heartbeat_s that it still runs its trial; the chief re-queues a
            trial it has not heard of for worker_timeout_s; a worker gives
            up on a chief that does not answer for chief_timeout_s.
        verbose: progress inside a trial: 0 nothing but the line each
            finished trial prints, 1 Keras's progress bars, 2 one line per
            epoch.
        **kwargs: `BaseTuner` arguments (directory,
            project_name, overwrite).

    `failed`: {trial id: why} of the trials this process ran that failed
    (Keras Tuner records them and goes on; a later run re-queues them).
    `repaired`: [(file, why)] of the damaged or missing state files
    (oracle.json, trial.json) this tuner rebuilt from the trials'
    results.json when it loaded the sweep (`repair.rebuild_state`).
    """

    def __init__(self, grid, max_trials=None, progress=None, strategy=None,
                 pack=1, allow_small_dataset=False,
                 heartbeat_s=distributed.DEFAULT_HEARTBEAT_S,
                 worker_timeout_s=distributed.DEFAULT_WORKER_TIMEOUT_S,
                 chief_timeout_s=distributed.DEFAULT_CHIEF_TIMEOUT_S,
                 verbose=0, **kwargs):
        if verbose not in (0, 1, 2):
            validation.fail("verbose", "0 (one line per trial), 1 (progress "
                            "bars) or 2 (one line per epoch)", verbose)
        self.pack = validation.positive_int("pack", pack)
        if pack > 1 and strategy is not None:
            raise ValueError(f"pack={pack}: packed trials run on one device; "
                             "pass `strategy=None`")
        self.verbose, self.grid, self.strategy = verbose, grid, strategy
        self.allow_small_dataset = allow_small_dataset
        self.failed, self.repaired = {}, []
        self.heartbeat_s = validation.positive_number("heartbeat_s", heartbeat_s)
        self.worker_timeout_s = validation.positive_number(
            "worker_timeout_s", worker_timeout_s)
        self.chief_timeout_s = validation.positive_number(
            "chief_timeout_s", chief_timeout_s)
        self.progress = progress or (lambda line: print(line, flush=True))
        self._heartbeat, self._asked = None, False
        self._set_groups(validation.positive_int("max_trials", max_trials,
                                                 allow_none=True))
        oracle_lib.load_any_sweep_state(kwargs)
        super().__init__(oracle=self.new_oracle(), **kwargs)
        if oracle_lib.is_worker():  # Keras Tuner waits an hour for each answer
            self.oracle.stub = distributed.BoundedStub(self.oracle.stub,
                                                       self.chief_timeout_s)
        self._started = time.perf_counter()
        self._finished_here = 0
        self._counted = None  # trial folders with results, from on_search_begin
        self._results = {}  # {trial id: its first point's results}, this process

    def _set_groups(self, max_trials):
        """The grid's points in trials (`groups`, one point each unless
        `pack` > 1) and the number of trials to run (`total_trials`)."""
        if self.pack > 1:
            self.groups = packing.group_points(self.grid.points(),
                                               self.grid.config, self.pack)
        else:
            self.groups = [[p] for p in self.grid.points()]
        # The oracle hands out one point per group (its first): a trial
        # trains the whole group.
        self._group_of = {point_key(g[0]): g for g in self.groups}
        leaders = len(self.groups)
        self.total_trials = leaders if max_trials is None else min(max_trials, leaders)

    def new_oracle(self):
        """A fresh oracle over the trials' first points (no state loaded)."""
        return oracle_lib.GridPointOracle(
            [g[0] for g in self.groups],
            objective=keras_tuner.Objective(self.grid.objective, "max"),
            max_trials=self.total_trials,
            hyperparameters=hyperparameters(self.grid))

    def group(self, values):
        """The points the trial of first point `values` trains, or None."""
        return self._group_of.get(point_key(values))

    def save(self):
        """Keras Tuner's, each file written whole or not at all."""
        if not oracle_lib.is_worker():
            self.oracle.save()
        files.write_text_atomic(oracle_lib.tuner_state_file(self),
                                json.dumps(self.get_state()))

    def reload(self):
        """Loads the oracle's state (oracle.json, every trial.json); where
        one is missing or damaged, rebuilds it all from the trials'
        results.json (`repair.rebuild_state`), naming the files. A worker's
        own state is empty (`{}`): it has nothing to load."""
        if oracle_lib.is_worker():
            return
        damaged = oracle_lib.state_problems(self.project_dir)
        if not damaged:
            try:
                self.oracle.reload()
                return
            except Exception as e:  # a valid JSON of the wrong shape
                damaged = [(oracle_lib.oracle_state_file(self.oracle),
                            f"cannot be loaded ({type(e).__name__}: {e})")]
        repair.rebuild_state(self, damaged)

    def search(self, *args, **kwargs):
        """Keras Tuner's search. The chief serves (`distributed.serve`)
        until every trial has ended; a worker first checks that the chief
        answers (`distributed.wait_for_chief`). distributed.ChiefError when
        no chief answers, or it stops answering."""
        if oracle_lib.is_chief():
            self.oracle.verbose = 0
            self.save()
            distributed.serve(self.oracle, self.total_trials, self.progress,
                              self.worker_timeout_s,
                              poll_s=min(1.0, self.heartbeat_s))
            return
        if not oracle_lib.is_worker():
            return super().search(*args, **kwargs)
        import grpc  # only chief/worker sweeps use gRPC (Keras Tuner's transport)

        distributed.wait_for_chief(self.chief_timeout_s)
        try:
            return super().search(*args, **kwargs)
        except grpc.RpcError as e:
            raise distributed.lost_chief(e, self.chief_timeout_s) from None

    def _run_and_update_trial(self, trial, *args, **kwargs):
        import grpc  # only chief/worker sweeps use gRPC (Keras Tuner's transport)

        try:
            return super()._run_and_update_trial(trial, *args, **kwargs)
        except grpc.RpcError as e:  # a worker's call to the chief
            raise distributed.lost_chief(e, self.chief_timeout_s) from None

    def on_search_begin(self):
        """Counts the trial folders that already hold results: the progress
        line's tally starts there and grows with each trial that ends."""
        super().on_search_begin()
        self._counted = set(self.finished_trials())

    def pre_create_trial(self):
        # The last request got no trial (IDLE: other workers' trials run,
        # one may come back): ask again a little later.
        if self._asked:
            if self._asked == 1:
                self.progress("Waiting: every grid point is handed out and "
                              "other workers' trials are running (a trial "
                              "whose worker is lost comes back here).")
            self._asked = 2
            time.sleep(min(self.heartbeat_s, IDLE_POLL_S))
        else:
            self._asked = 1

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._asked = False
        if oracle_lib.is_worker():
            self._heartbeat = distributed.Heartbeat(
                self.oracle.stub, trial.trial_id, self.heartbeat_s)

    def trial_points(self, values, trial_dir):
        """[(point values, config, output folder)] a trial trains: its own
        point into `trial_dir`, the rest of its pack into
        `trial_dir/point_<i>`."""
        return [(p, self.grid.config(p),
                 trial_dir if i == 0 else os.path.join(trial_dir, f"point_{i}"))
                for i, p in enumerate(self.group(values) or [values])]

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

    def _train_points(self, points):
        """Trains a trial's points (a re-queued interrupted trial starts
        over); returns their results."""
        for _, _, folder in points:
            clear_trial_dir(folder)
        if len(points) > 1:
            return packing.run_packed([c for _, c, _ in points],
                                      [d for _, _, d in points])
        return [experiment.run_comparison(
            points[0][1], points[0][2], verbose=self.verbose, plot=False,
            strategy=self.strategy, allow_small_dataset=self.allow_small_dataset)]

    def _train_trial(self, trial, out):
        values = {k: trial.hyperparameters.get(k) for k in self.grid.axes}
        points = self.trial_points(values, out)
        try:  # killed after writing results.json, before the oracle knew
            finished = [results_lib.read_finished(d, c) for _, c, d in points]
        except ValueError:
            finished = self._train_points(points)
        for (point, _, folder), results in zip(points, finished):
            hparams_dir = os.path.join(folder, "tensorboard", "hparams")
            if not os.path.isdir(hparams_dir):
                write_hparams(hparams_dir, point, trial_metrics(results))
        self._results[trial.trial_id] = finished[0]
        return trial_metrics(finished[0])

    def finished_trials(self, known=()):
        """Trial folders with a readable results.json (shared by all
        workers), reading each but those named in `known`."""
        return sorted(name for name in os.listdir(self.project_dir)
                      if name.startswith("trial_") and (name in known or _readable(
                          os.path.join(self.project_dir, name, "results.json"))))

    def _count_finished(self, trial_id, results):
        """The progress line's tally of finished trials: those found when
        the search began, plus each that ends here with results; a worker
        also reads the folders of other workers' trials not counted yet."""
        if self._counted is None or oracle_lib.is_worker():
            self._counted = set(self.finished_trials(known=self._counted or ()))
        if results is not None:
            self._counted.add(f"trial_{trial_id}")
        return len(self._counted)

    def finished_versions(self):
        """{keras_egf version: n} of the finished results (packed points
        included; "unknown" if unrecorded), as the report counts them."""
        return report.load_sweep(self.project_dir).library_versions()

    def on_trial_end(self, trial):
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        super().on_trial_end(trial)
        self._finished_here += 1
        results = self._results.pop(trial.trial_id, None)
        done = self._count_finished(trial.trial_id, results)
        elapsed = time.perf_counter() - self._started
        eta = elapsed / self._finished_here * max(0, self.total_trials - done)
        values = dict(trial.hyperparameters.values)
        packed = len(self.group(values) or [values]) - 1
        self.progress(
            f"[{done}/{self.total_trials}] trial {trial.trial_id} {values} "
            f"sparse acc {_describe(results, 'sparse')} dense acc "
            f"{_describe(results, 'dense')}"
            + (f" (+{packed} packed point(s) in point_*/)" if packed else "")
            + f" ETA {eta / 60:.1f} min")

    def save_model(self, trial_id, model, step=0):
        pass  # trials save results.json, not models

    def load_model(self, trial):
        raise NotImplementedError("SC-SDC trials keep results.json, not models.")
