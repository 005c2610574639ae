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
files are not touched. results.json is read and checked by
`keras_egf.results`, as the report reads it. The oracle's own state
(oracle.json, trial.json) is written whole too; one that is missing or
damaged anyway is rebuilt from the trials' results.json (`rebuild_state`),
and a damaged grid.json is rewritten once the trials are found to be the
grid's (`repair_grid_file`). Chief and workers: `keras_egf.distributed`.
"""

import glob
import json
import os
import shutil
import time

import keras_tuner

from keras_egf import distributed
from keras_egf import experiment
from keras_egf import files
from keras_egf import interrupts
from keras_egf import report
from keras_egf import results as results_lib
from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS

METRICS = tuple(f"{model}_{name}" for model in ("sparse", "dense")
                for name in ("test_accuracy", "test_loss") + tuple(
                    f"average_{m}" for m in GRADIENT_FLOW_METRICS)
                ) + ("sparse_minus_dense_accuracy",)
GRID_FILE = files.GRID_FILE
IDLE_POLL_S = 2.0  # a waiting worker asks the chief again this often (at most)


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

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        """Keras Tuner's, but while other workers' trials run a worker that
        finds no point left is told to wait (IDLE), not to stop: a trial
        whose worker is lost comes back to the queue
        (`distributed.requeue_lost`)."""
        trial = super().create_trial(tuner_id)
        TrialStatus = keras_tuner.engine.trial.TrialStatus
        if trial.status == TrialStatus.STOPPED and any(
                t != tuner_id for t in self.ongoing_trials):
            self.tuner_ids.add(tuner_id)
            trial.status = TrialStatus.IDLE
        return trial

    def save(self):  # whole or not at all (Keras Tuner writes in place)
        files.write_text_atomic(self._get_oracle_fname(),
                                json.dumps(self.get_state()))

    def _save_trial(self, trial):
        files.write_text_atomic(
            os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
            json.dumps(trial.get_state()))


def results_problem(trial_dir, config):
    """Why `trial_dir`'s results.json is not a finished result of `config`
    (a short text), or None when it is one."""
    return _checked_results(trial_dir, config)[1]


def _checked_results(trial_dir, config):
    """(results, None) when trial_dir/results.json is a finished result of
    `config`, else (None, why): the file is read once."""
    path = os.path.join(trial_dir, "results.json")
    try:  # the report's own check (keras_egf.results)
        results = results_lib.read(path)
    except ValueError as e:
        return None, "results.json " + str(e).split(": ", 1)[-1]
    why = _results_mismatch(results, config)
    return (None, why) if why else (results, None)


def _saved_config(saved):
    """A results file's config, every setting of this version in it (one an
    older keras-egf did not write counts as its default value) and in JSON's
    types (lists, not tuples)."""
    defaults = experiment.ComparisonConfig().to_dict()
    return json.loads(json.dumps({k: saved.get(k, v) for k, v in defaults.items()}))


def _results_mismatch(results, config):
    """Why a checked results dict (`results_lib.check`) is not a finished
    result of `config`."""
    models = results["models"]
    if _saved_config(results["config"]) != _saved_config(config.to_dict()):
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


def _trial_folders(project_dir):
    """{trial id: folder} of the sweep's trial_* folders."""
    return {name[len("trial_"):]: os.path.join(project_dir, name)
            for name in os.listdir(project_dir)
            if name.startswith("trial_") and
            os.path.isdir(os.path.join(project_dir, name))}


def _load_any_sweep_state(tuner_kwargs):
    """Makes Keras Tuner load a sweep that has trials even when this
    process's `<tuner id>.json` is missing (Keras Tuner would start a new
    oracle over the finished trials' folders): the file holds `{}`."""
    import keras_tuner.src.distribute.utils as dist_utils

    if tuner_kwargs.get("overwrite") or (
            dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()):
        return
    project_dir = os.path.join(str(tuner_kwargs.get("directory") or "."),
                               tuner_kwargs.get("project_name") or "untitled_project")
    tuner_file = os.path.join(
        project_dir, os.environ.get("KERASTUNER_TUNER_ID", "tuner0") + ".json")
    if os.path.isdir(project_dir) and not os.path.exists(tuner_file) and (
            os.path.exists(os.path.join(project_dir, "oracle.json"))
            or _trial_folders(project_dir)):
        files.write_text_atomic(tuner_file, "{}")


def state_problems(project_dir):
    """[(file, why)] of the sweep's Keras Tuner state that cannot be loaded:
    oracle.json missing, empty or not JSON, and each trial_*/trial.json
    that is missing, unreadable or not a trial."""
    from keras_tuner.engine import trial as trial_module

    damaged = []
    path = os.path.join(project_dir, "oracle.json")
    try:
        if not isinstance(files.read_json(path), dict):
            damaged.append((path, "not a Keras Tuner oracle state"))
    except ValueError as e:
        damaged.append((path, str(e).split(": ", 1)[-1]))
    for trial_id, folder in sorted(_trial_folders(project_dir).items()):
        path = os.path.join(folder, "trial.json")
        try:
            state = files.read_json(path)
            trial = trial_module.Trial.from_state(state)
            if trial.trial_id != trial_id:
                raise ValueError(f"holds trial {trial.trial_id!r}")
        except ValueError as e:
            damaged.append((path, str(e).split(": ", 1)[-1]))
        except Exception as e:  # JSON, but not a trial
            damaged.append((path, f"not a Keras Tuner trial ({type(e).__name__}: {e})"))
    return damaged


def survey_trials(tuner):
    """What the trial folders hold: ({trial id: (leader values, results)}
    of the trials whose results.json are a finished result of one of the
    tuner's trials (every point of its pack), [trial ids without one]).
    ValueError naming a results.json that is valid but of no trial of this
    grid (and --pack): its sweep is another one."""
    def key(config_dict):
        return json.dumps(_saved_config(config_dict), sort_keys=True)

    leader_of = {key(tuner.grid.config(g[0]).to_dict()): g[0] for g in tuner.groups}
    finished, unfinished = {}, []
    for trial_id, folder in sorted(_trial_folders(tuner.project_dir).items()):
        path = os.path.join(folder, "results.json")
        try:
            results = results_lib.read(path)
        except ValueError:
            unfinished.append(trial_id)
            continue
        leader = leader_of.get(key(results["config"]))
        if leader is None:
            raise ValueError(
                f"{path} is not a point of this grid (with this --pack): the "
                "folder holds another sweep; resume it with its own grid, "
                "--seeds and --pack, or choose another --output_dir")
        points = tuner.trial_points(leader, folder)
        extra = sorted(set(glob.glob(os.path.join(folder, "point_*", "results.json")))
                       - {os.path.join(d, "results.json") for _, _, d in points})
        if extra:
            raise ValueError(
                f"{extra[0]} is not a point this --pack puts in {folder}: the "
                "folder holds a sweep of another --pack; resume it with its "
                "own grid, --seeds and --pack, or choose another --output_dir")
        if any(results_problem(d, c) for _, c, d in points) or any(
                v[0] == leader for v in finished.values()):
            unfinished.append(trial_id)
        else:
            finished[trial_id] = (leader, results)
    return finished, unfinished


def rebuild_state(tuner, damaged):
    """Rebuilds the oracle's state (oracle.json and every trial.json) from
    the trial folders: a trial whose results.json (and its pack's) is a
    finished result of a grid point is kept as finished; every other trial
    folder is queued to run again, with its old point where its trial.json
    still says it, else with the next point not yet run. `damaged`: [(file,
    why)], named in the line it prints. Only where the oracle lives (one
    process, or the chief), while no other process uses the sweep.
    """
    from keras_tuner.engine import trial as trial_module

    finished, unfinished = survey_trials(tuner)
    taken = [values for values, _ in finished.values()]
    values_of = {tid: values for tid, (values, _) in finished.items()}
    for trial_id in unfinished:
        path = os.path.join(tuner.project_dir, f"trial_{trial_id}", "trial.json")
        try:
            values = trial_module.Trial.load(path).hyperparameters.values
            values = next(g[0] for g in tuner.groups
                          if _point_key(g[0]) == _point_key(values))
        except Exception:
            values = None
        if values is None or values in taken:
            values = next((g[0] for g in tuner.groups if g[0] not in taken), None)
        if values is None:
            raise ValueError(
                f"{os.path.join(tuner.project_dir, f'trial_{trial_id}')} holds no "
                "finished result and the grid has no point left for it: move "
                "it out of the sweep and run again")
        taken.append(values)
        values_of[trial_id] = values
    oracle = tuner._new_oracle()
    oracle._set_project_dir(tuner.directory, tuner.project_name)
    for trial_id in sorted(values_of, key=lambda t: (len(t), t)):
        hp = oracle.hyperparameters.copy()
        hp.values = dict(values_of[trial_id])
        trial = trial_module.Trial(hyperparameters=hp, trial_id=trial_id,
                                   status=trial_module.TrialStatus.RUNNING)
        oracle.trials[trial_id] = trial
        oracle.start_order.append(trial_id)
        oracle._record_values(trial)
        if trial_id in finished:
            oracle.update_trial(trial_id, trial_metrics(finished[trial_id][1]))
            trial.status = trial_module.TrialStatus.COMPLETED
            oracle.score_trial(trial)
            oracle.end_order.append(trial_id)
            oracle._run_times[trial_id] += 1
        else:
            trial.status = trial_module.TrialStatus.IDLE
            oracle._retry_queue.insert(0, trial_id)  # popped from the end
        oracle._save_trial(trial)
    oracle.save()
    tuner.oracle = oracle
    tuner.repaired = list(damaged)
    rel = lambda path: os.path.relpath(path, tuner.project_dir)  # noqa: E731
    tuner.progress(
        "Rebuilt the sweep's state from its trials' results.json ("
        + "; ".join(f"{rel(path)}: {why}" for path, why in damaged)
        + f"): {len(finished)} finished trial(s) kept, {len(unfinished)} to "
        "run again.")


def _point_key(values):
    return tuple(sorted((k, repr(v)) for k, v in values.items()))


def _clear_trial_dir(trial_dir):
    """Clears what an interrupted earlier run of this trial left behind."""
    shutil.rmtree(os.path.join(trial_dir, "tensorboard"), ignore_errors=True)
    for name in ("results.json", "comparison.png"):
        path = os.path.join(trial_dir, name)
        if os.path.exists(path):
            os.remove(path)


def _grid_spec(grid, pack):
    return grid.to_dict() if pack == 1 else {**grid.to_dict(), "pack": pack}


def check_same_grid(project_dir, grid, pack=1):
    """Records the grid (and a pack size > 1) in a new sweep; refuses to
    resume with another one. Returns None, or why grid.json cannot be read
    (damaged, or missing beside trial folders): nothing is written then;
    `repair_grid_file` rewrites it once the trials are found to be this
    grid's."""
    path = os.path.join(project_dir, GRID_FILE)
    spec = _grid_spec(grid, pack)
    if os.path.lexists(path):
        try:
            saved = files.read_json(path)
        except ValueError as e:
            return str(e).split(": ", 1)[-1]
        if saved != spec:
            raise ValueError(
                f"output_dir={project_dir!r} holds a sweep of a different grid "
                f"(saved in {path}): resume with the same grid, --seeds and --pack, or "
                "pass --overwrite, or choose a new --output_dir")
        return None
    if os.path.isdir(project_dir) and _trial_folders(project_dir):
        return "missing"
    os.makedirs(project_dir, exist_ok=True)
    files.write_json_atomic(path, spec)
    return None


def repair_grid_file(tuner, why):
    """Rewrites a damaged or missing grid.json (`why`, from
    `check_same_grid`) from the tuner's grid and pack, once every finished
    trial is found to be one of its points (`survey_trials`: ValueError
    naming one that is not); returns the line saying so. Where the oracle
    lives (one process, or the chief)."""
    path = os.path.join(tuner.project_dir, GRID_FILE)
    finished, _ = survey_trials(tuner)
    files.write_json_atomic(path, _grid_spec(tuner.grid, tuner.pack))
    return (f"{path} was {why}; rewritten from this command's grid, of which "
            f"every finished trial ({len(finished)}) is a point.")


def grid_file_error(project_dir, why):
    """The error for a worker that finds grid.json damaged or missing."""
    return ValueError(
        f"{os.path.join(project_dir, GRID_FILE)}: {why}; it records the "
        "sweep's grid: start the chief (or one keras-egf-sweep without "
        "KERASTUNER_TUNER_ID) with the sweep's --grid, --seeds and --pack, "
        "which rewrites it once every finished trial is found to be a "
        "point of that grid")


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
        heartbeat_s, worker_timeout_s, chief_timeout_s: chief and workers
            (`keras_egf.distributed`): a worker tells the chief every
            heartbeat_s that it still runs its trial; the chief re-queues a
            trial it has not heard of for worker_timeout_s; a worker gives
            up on a chief that does not answer for chief_timeout_s.
        **kwargs: `keras_tuner.Tuner` arguments (directory, project_name,
            overwrite, ...).

    `failed`: {trial id: why} of the trials this process ran that failed
    (Keras Tuner records them and goes on; a later run re-queues them).
    `repaired`: [(file, why)] of the damaged or missing state files
    (oracle.json, trial.json) this tuner rebuilt from the trials'
    results.json when it loaded the sweep (`rebuild_state`).
    """

    def __init__(self, grid, max_trials=None, progress=None, strategy=None,
                 pack=1, allow_small_dataset=False,
                 heartbeat_s=distributed.DEFAULT_HEARTBEAT_S,
                 worker_timeout_s=distributed.DEFAULT_WORKER_TIMEOUT_S,
                 chief_timeout_s=distributed.DEFAULT_CHIEF_TIMEOUT_S,
                 verbose=0, **kwargs):
        if verbose not in (0, 1, 2):
            raise ValueError("verbose must be 0 (one line per trial), 1 "
                             "(progress bars) or 2 (one line per epoch). "
                             f"Received: verbose={verbose!r}")
        self.verbose = verbose
        self.grid = grid
        self.allow_small_dataset = allow_small_dataset
        self.failed = {}
        self.repaired = []
        self.heartbeat_s = heartbeat_s
        self.worker_timeout_s = worker_timeout_s
        self.chief_timeout_s = chief_timeout_s
        self._heartbeat = None
        self._asked = False
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
        self._new_oracle = lambda: GridPointOracle(
            leaders,
            objective=keras_tuner.Objective(grid.objective, "max"),
            max_trials=total, hyperparameters=_hyperparameters(grid))
        _load_any_sweep_state(kwargs)
        super().__init__(oracle=self._new_oracle(), **kwargs)
        if self._is_worker():  # Keras Tuner waits an hour for each answer
            self.oracle.stub = distributed.BoundedStub(self.oracle.stub,
                                                       chief_timeout_s)
        self._started = time.perf_counter()
        self._finished_here = 0

    def save(self):
        """Keras Tuner's, each file written whole or not at all."""
        if not self._is_worker():
            self.oracle.save()
        files.write_text_atomic(self._get_tuner_fname(),
                                json.dumps(self.get_state()))

    def reload(self):
        """Loads the oracle's state (oracle.json, every trial.json); where
        one is missing or damaged, rebuilds it all from the trials'
        results.json (`rebuild_state`), naming the files. A worker's own
        state is empty (`{}`): it has nothing to load."""
        if self._is_worker():
            return
        damaged = state_problems(self.project_dir)
        if not damaged:
            try:
                self.oracle.reload()
                return
            except Exception as e:  # a valid JSON of the wrong shape
                damaged = [(self.oracle._get_oracle_fname(),
                            f"cannot be loaded ({type(e).__name__}: {e})")]
        rebuild_state(self, damaged)

    def search(self, *args, **kwargs):
        """Keras Tuner's search. The chief serves (`distributed.serve`)
        until every trial has ended; a worker first checks that the chief
        answers (`distributed.wait_for_chief`). distributed.ChiefError when
        no chief answers, or it stops answering."""
        from keras_tuner.src.distribute import utils as dist_utils

        if dist_utils.is_chief_oracle():
            self.oracle.verbose = 0
            self.save()
            distributed.serve(self.oracle, self.total_trials, self.progress,
                              self.worker_timeout_s,
                              poll_s=min(1.0, self.heartbeat_s))
            return
        if not self._is_worker():
            return super().search(*args, **kwargs)
        import grpc

        distributed.wait_for_chief(self.chief_timeout_s)
        try:
            return super().search(*args, **kwargs)
        except grpc.RpcError as e:
            raise distributed.lost_chief(e, self.chief_timeout_s) from None

    def _run_and_update_trial(self, trial, *args, **kwargs):
        import grpc

        try:
            return super()._run_and_update_trial(trial, *args, **kwargs)
        except grpc.RpcError as e:  # a worker's call to the chief
            raise distributed.lost_chief(e, self.chief_timeout_s) from None

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
        if self._is_worker():
            self._heartbeat = distributed.Heartbeat(
                self.oracle.stub, trial.trial_id, self.heartbeat_s)

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
                    points[0][1], out, verbose=self.verbose, plot=False,
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
                results_lib.read(os.path.join(self.project_dir, name,
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
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
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
