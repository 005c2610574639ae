"""The sweep's oracle, and every use of Keras Tuner's private state.

Written against Keras Tuner 1.4.8 (setup.cfg allows >=1.4,<1.5). Keras
Tuner has no public way to re-queue a finished trial, rebuild an oracle's
state from elsewhere, tell a worker from the chief, or name the files it
keeps, so the sweep does these here and only here, through these private
names: `Oracle._duplicate`, `_get_oracle_fname`, `_get_trial_dir`,
`_save_trial`, `_set_project_dir`, `_compute_values_hash`, `_id_to_hash`,
`_retry_queue`, `_record_values`, `_run_times` (and the plain attributes
`trials`, `start_order`, `end_order`), `BaseTuner._get_tuner_fname`, and the
module `keras_tuner.src.distribute.utils`. A Keras Tuner upgrade checks this
module first (tests/test_sweep_recovery.py covers each use).
"""

import json
import os

import keras_tuner
from keras_tuner.engine import trial as trial_module
from keras_tuner.src.distribute import utils as dist_utils

from keras_egf import files

KERAS_TUNER_VERSION = "1.4.8"  # the version this module's private uses match
TrialStatus = trial_module.TrialStatus


class GridPointOracle(keras_tuner.oracles.GridSearchOracle):
    """The GridSearch oracle over a fixed list of grid points.

    Keras Tuner's GridSearchOracle derives each new point from a *finished*
    trial, so with several workers all but one wait (IDLE) until trials end.
    A Cartesian grid is known up front: this oracle hands out the first point
    not yet tried, in grid order. Tried points are the oracle's own
    `_tried_so_far` record (saved with its state), so each point runs once
    across workers and across resumes; interrupted trials come back through
    Keras Tuner's retry queue. Its state files are written whole or not at
    all (Keras Tuner writes them in place).
    """

    def __init__(self, points, **kwargs):
        super().__init__(**kwargs)
        self._points = [dict(p) for p in points]

    def populate_space(self, trial_id):
        for values in self._points:
            if not self._duplicate(values):
                return {"status": TrialStatus.RUNNING, "values": dict(values)}
        return {"status": TrialStatus.STOPPED, "values": None}

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        """Keras Tuner's, but while other workers' trials run a worker that
        finds no point left is told to wait (IDLE), not to stop: a trial
        whose worker is lost comes back to the queue
        (`distributed.requeue_lost`)."""
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.STOPPED and any(
                t != tuner_id for t in self.ongoing_trials):
            self.tuner_ids.add(tuner_id)
            trial.status = TrialStatus.IDLE
        return trial

    def save(self):
        files.write_text_atomic(self._get_oracle_fname(),
                                json.dumps(self.get_state()))

    def _save_trial(self, trial):
        files.write_text_atomic(
            os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
            json.dumps(trial.get_state()))


def is_chief():
    """This process is the chief of a chief/worker sweep."""
    return dist_utils.is_chief_oracle()


def is_worker():
    """This process is a worker of a chief/worker sweep."""
    return dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()


def tuner_state_file(tuner):
    """The tuner's `<tuner id>.json` (its state: `{}`)."""
    return tuner._get_tuner_fname()


def oracle_state_file(oracle):
    """The oracle's oracle.json."""
    return oracle._get_oracle_fname()


def trial_folders(project_dir):
    """{trial id: folder} of the sweep's trial_* folders."""
    return {name[len("trial_"):]: os.path.join(project_dir, name)
            for name in os.listdir(project_dir)
            if name.startswith("trial_") and
            os.path.isdir(os.path.join(project_dir, name))}


def load_any_sweep_state(tuner_kwargs):
    """Makes Keras Tuner load a sweep that has trials even when this
    process's `<tuner id>.json` is missing (Keras Tuner would start a new
    oracle over the finished trials' folders): the file holds `{}`."""
    if tuner_kwargs.get("overwrite") or is_worker():
        return
    project_dir = os.path.join(str(tuner_kwargs.get("directory") or "."),
                               tuner_kwargs.get("project_name") or "untitled_project")
    tuner_file = os.path.join(
        project_dir, os.environ.get("KERASTUNER_TUNER_ID", "tuner0") + ".json")
    if os.path.isdir(project_dir) and not os.path.exists(tuner_file) and (
            os.path.exists(os.path.join(project_dir, "oracle.json"))
            or trial_folders(project_dir)):
        files.write_text_atomic(tuner_file, "{}")


def state_problems(project_dir):
    """[(file, why)] of the sweep's Keras Tuner state that cannot be loaded:
    oracle.json missing, empty or not JSON, and each trial_*/trial.json
    that is missing, unreadable or not a trial."""
    damaged = []
    path = os.path.join(project_dir, "oracle.json")
    try:
        if not isinstance(files.read_json(path), dict):
            damaged.append((path, "not a Keras Tuner oracle state"))
    except ValueError as e:
        damaged.append((path, str(e).split(": ", 1)[-1]))
    for trial_id, folder in sorted(trial_folders(project_dir).items()):
        path = os.path.join(folder, "trial.json")
        try:
            trial = trial_module.Trial.from_state(files.read_json(path))
            if trial.trial_id != trial_id:
                raise ValueError(f"holds trial {trial.trial_id!r}")
        except ValueError as e:
            damaged.append((path, str(e).split(": ", 1)[-1]))
        except Exception as e:  # JSON, but not a trial
            damaged.append((path, f"not a Keras Tuner trial ({type(e).__name__}: {e})"))
    return damaged


def saved_trial_values(path):
    """The hyperparameter values a trial.json holds, or None when it
    cannot be loaded."""
    try:
        return trial_module.Trial.load(path).hyperparameters.values
    except Exception:  # damaged in any way: the caller picks a point
        return None


def known_trial_ids(oracle):
    """Every trial id the oracle has handed out (its folder may be gone)."""
    return sorted(set(oracle._id_to_hash) | set(oracle.trials))


def restore_trial(oracle, trial_id, points):
    """The Trial of `trial_id` whose folder (and trial.json) was deleted,
    made again from the one of `points` (values dicts) the oracle recorded
    for it; None when it recorded none of them."""
    by_hash = {oracle._compute_values_hash(p): p for p in points}
    values = by_hash.get(oracle._id_to_hash.get(trial_id))
    if values is None:
        return None
    hp = oracle.hyperparameters.copy()
    hp.values = dict(values)
    trial = trial_module.Trial(hyperparameters=hp, trial_id=trial_id)
    oracle.trials[trial_id] = trial
    return trial


def requeue(oracle, trial):
    """Sends `trial` back to the oracle's queue (the next request gets it),
    saving its trial.json; the caller saves the oracle."""
    trial.status = TrialStatus.IDLE
    if trial.trial_id in oracle.end_order:
        oracle.end_order.remove(trial.trial_id)
    if trial.trial_id not in oracle._retry_queue:
        oracle._retry_queue.append(trial.trial_id)
    oracle._save_trial(trial)


def build_state(oracle, directory, project_name, values_of, metrics_of):
    """Writes a new oracle's whole state into the sweep's folder: a trial
    for each of `values_of` ({trial id: point values}), finished with its
    metrics where `metrics_of` ({trial id: metrics}) has them, queued to
    run again otherwise."""
    oracle._set_project_dir(directory, project_name)
    for trial_id in sorted(values_of, key=lambda t: (len(t), t)):
        hp = oracle.hyperparameters.copy()
        hp.values = dict(values_of[trial_id])
        trial = trial_module.Trial(hyperparameters=hp, trial_id=trial_id,
                                   status=TrialStatus.RUNNING)
        oracle.trials[trial_id] = trial
        oracle.start_order.append(trial_id)
        oracle._record_values(trial)
        if trial_id in metrics_of:
            oracle.update_trial(trial_id, metrics_of[trial_id])
            trial.status = TrialStatus.COMPLETED
            oracle.score_trial(trial)
            oracle.end_order.append(trial_id)
            oracle._run_times[trial_id] += 1
        else:
            trial.status = TrialStatus.IDLE
            oracle._retry_queue.insert(0, trial_id)  # popped from the end
        oracle._save_trial(trial)
    oracle.save()
    return oracle
