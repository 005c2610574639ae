"""What a sweep finds when it resumes, and how it mends it.

- `survey_trials`: which trial folders hold a finished result of one of the
  tuner's trials (every point of its pack), read as the report reads them
  (`keras_egf.results`);
- `requeue_broken_trials`: finished trials whose results are missing or
  unreadable, and failed trials, go back to the oracle's queue;
- `rebuild_state`: a missing or damaged oracle.json or trial.json is
  rebuilt from the trials' results.json;
- the grid guard: `check_same_grid` records the grid in grid.json and
  refuses to resume with another one; `repair_grid_file` rewrites a damaged
  grid.json once the trials are found to be the grid's; `grid_file_error`
  is what a worker says instead.

Each runs where the oracle lives (one process, or the chief); the oracle's
private state is touched only through `keras_egf.sweep.oracle`.
"""

import glob
import json
import os

from keras_egf import files
from keras_egf import results as results_lib
from keras_egf.sweep import oracle as oracle_lib
from keras_egf.sweep.hparams import trial_metrics

GRID_FILE = files.GRID_FILE


def _another_sweep(path, what, holds):
    return ValueError(
        f"{path} is not {what}: the folder holds {holds}; resume it with its "
        "own `grid`, `seeds` and `pack`, or choose another `output_dir`")


def _finished_leader(tuner, folder, leader_of):
    """(leader values, results) when `folder` holds a finished result of
    one of the tuner's trials, else None; ValueError when it holds a
    valid result that is no trial of this grid and `pack`."""
    path = os.path.join(folder, "results.json")
    try:
        results = results_lib.read(path)
    except ValueError:
        return None
    leader = leader_of.get(_config_key(results["config"]))
    if leader is None:
        raise _another_sweep(path, "a point of this grid (with this `pack`)",
                             "another sweep")
    points = tuner.trial_points(leader, folder)
    extra = sorted(set(glob.glob(os.path.join(folder, "point_*", "results.json")))
                   - {os.path.join(d, "results.json") for _, _, d in points})
    if extra:
        raise _another_sweep(extra[0], f"a point this `pack` puts in {folder}",
                             "a sweep of another `pack`")
    if any(results_lib.finished_problem(d, c) for _, c, d in points):
        return None
    return leader, results


def _config_key(config_dict):
    return json.dumps(results_lib.saved_config(config_dict), sort_keys=True)


def survey_trials(tuner):
    """What the trial folders hold: ({trial id: (leader values, results)}
    of the trials whose results.json are a finished result of one of the
    tuner's trials (every point of its pack), [trial ids without one]).
    ValueError naming a results.json that is valid but of no trial of this
    grid (and pack): its sweep is another one."""
    leader_of = {_config_key(tuner.grid.config(g[0]).to_dict()): g[0]
                 for g in tuner.groups}
    finished, unfinished = {}, []
    for trial_id, folder in sorted(oracle_lib.trial_folders(tuner.project_dir).items()):
        found = _finished_leader(tuner, folder, leader_of)
        if found is None or any(v[0] == found[0] for v in finished.values()):
            unfinished.append(trial_id)
        else:
            finished[trial_id] = found
    return finished, unfinished


def _broken(tuner, trial_id, trial):
    """Why a known trial must run again, or None."""
    status = oracle_lib.TrialStatus
    if trial.status in (status.FAILED, status.INVALID):
        return "failed in an earlier run"
    if trial.status != status.COMPLETED:
        return None  # interrupted ones are re-queued by Keras Tuner itself
    values = {k: trial.hyperparameters.get(k) for k in tuner.grid.axes}
    problems = [results_lib.finished_problem(d, c) for _, c, d in
                tuner.trial_points(values, tuner.get_trial_dir(trial_id))]
    return next((p for p in problems if p), None)


def requeue_broken_trials(tuner):
    """Sends finished trials whose results are missing or unreadable, and
    failed trials, back to the oracle's queue; returns [(trial_id, why)].
    Good trials are not touched. Runs where the oracle lives (one process,
    or the chief).
    """
    oracle = tuner.oracle
    requeued = []
    for trial_id in oracle_lib.known_trial_ids(oracle):
        trial = oracle.trials.get(trial_id)
        if trial is None:  # its folder (and trial.json) was deleted
            trial = oracle_lib.restore_trial(oracle, trial_id,
                                             [g[0] for g in tuner.groups])
            why = None if trial is None else "trial folder missing"
        else:
            why = _broken(tuner, trial_id, trial)
        if why is None:
            continue
        oracle_lib.requeue(oracle, trial)
        requeued.append((trial_id, why))
    if requeued:
        oracle.save()
    return requeued


def _points_for_unfinished(tuner, finished, unfinished):
    """{trial id: leader values} for the unfinished trial folders: the
    point their trial.json names where it is still free, else the next
    point not yet taken."""
    taken = [values for values, _ in finished.values()]
    values_of = {}
    for trial_id in unfinished:
        folder = os.path.join(tuner.project_dir, f"trial_{trial_id}")
        saved = oracle_lib.saved_trial_values(os.path.join(folder, "trial.json"))
        group = tuner.group(saved) if saved is not None else None
        values = group[0] if group else None
        if values is None or values in taken:
            values = next((g[0] for g in tuner.groups if g[0] not in taken), None)
        if values is None:
            raise ValueError(
                f"{folder} holds no finished result and the grid has no point "
                "left for it: move it out of the sweep and run again")
        taken.append(values)
        values_of[trial_id] = values
    return values_of


def rebuild_state(tuner, damaged):
    """Rebuilds the oracle's state (oracle.json and every trial.json) from
    the trial folders: a trial whose results.json (and its pack's) is a
    finished result of a grid point is kept as finished; every other trial
    folder is queued to run again, with its old point where its trial.json
    still says it, else with the next point not yet run. `damaged`: [(file,
    why)], named in the line it prints. Only where the oracle lives (one
    process, or the chief), while no other process uses the sweep.
    """
    finished, unfinished = survey_trials(tuner)
    values_of = {tid: values for tid, (values, _) in finished.items()}
    values_of.update(_points_for_unfinished(tuner, finished, unfinished))
    tuner.oracle = oracle_lib.build_state(
        tuner.new_oracle(), tuner.directory, tuner.project_name, values_of,
        {tid: trial_metrics(results) for tid, (_, results) in finished.items()})
    tuner.repaired = list(damaged)
    rel = lambda path: os.path.relpath(path, tuner.project_dir)  # noqa: E731
    tuner.progress(
        "Rebuilt the sweep's state from its trials' results.json ("
        + "; ".join(f"{rel(path)}: {why}" for path, why in damaged)
        + f"): {len(finished)} finished trial(s) kept, {len(unfinished)} to "
        "run again.")


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
                f"(saved in {path}): resume with the same `grid`, `seeds` and "
                "`pack`, or pass `overwrite=True`, or choose a new `output_dir`")
        return None
    if os.path.isdir(project_dir) and oracle_lib.trial_folders(project_dir):
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
        "KERASTUNER_TUNER_ID) with the sweep's `grid`, `seeds` and `pack`, "
        "which rewrites it once every finished trial is found to be a "
        "point of that grid")
