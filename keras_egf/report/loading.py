"""A sweep's results as the report reads them: every results.json below a
folder, read and checked by `keras_egf.results` (the sweep's own reader),
each a `Trial`; together a `Sweep`, with the folders that hold no usable
results and, when asked to report them together, the grids they come from.
"""

import dataclasses
import json
import math
import os

from keras_egf import files
from keras_egf import results as results_lib
from keras_egf.config import regularizer_label
from keras_egf.statistics import TARGETS

# The settings the report groups trials by: a results.json must hold them.
REPORT_SETTINGS = ("optimizer", "regularizers", "activation", "dense_width")


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass
class Trial:
    """One comparison's stored results."""
    trial_id: str
    path: str
    config: dict
    models: dict
    num_classes: int = None
    library_version: str = None  # keras_egf's version that wrote it

    @property
    def regularizer(self):
        return regularizer_label(self.config.get("regularizers") or ())

    def axis(self, name):
        return self.regularizer if name == "regularizer" else self.config.get(name)

    def measure(self, model, name):
        """`model`'s `name` averaged over training, or None if not finite."""
        value = ((self.models.get(model) or {}).get("average") or {}).get(name)
        return value if _finite(value) else None

    def diverged(self, model):
        """True when `model` was trained and diverged."""
        return bool((self.models.get(model) or {}).get("diverged"))

    def finished(self, model):
        """True when `model` trained without diverging and has test metrics."""
        r = self.models.get(model)
        return bool(r) and not r.get("diverged") and all(
            _finite(r.get(t)) for t in TARGETS)


@dataclasses.dataclass
class Sweep:
    """All trials of a sweep folder, and the folders that have no results."""
    sweep_dir: str
    trials: list
    incomplete: list
    grids: list = dataclasses.field(default_factory=list)  # mixed grids only

    def left_out(self, model):
        """{reason: count} of trials whose `model` the statistics skip."""
        counts = {}
        for t in self.trials:
            r = t.models.get(model)
            if r is None:
                reason = "not trained"
            elif r.get("diverged"):
                reason = "diverged"
            elif not t.finished(model):
                reason = "no finite test metrics"
            else:
                continue
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def library_versions(self):
        """{keras_egf version: number of trials} ("unknown" if not recorded)."""
        counts = {}
        for t in self.trials:
            v = t.library_version or "unknown"
            counts[v] = counts.get(v, 0) + 1
        return counts


def plural(count, noun):
    """"1 trial", "2 trials", "0 trials"."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def mixed_versions_text(counts):
    """A warning naming each keras_egf version and its trial count, or ""
    when all `counts` ({version: n}) are one version."""
    if len(counts) < 2:
        return ""
    listed = ", ".join(f"{v} ({plural(n, 'trial')})" for v, n in sorted(counts.items()))
    return (f"Warning: these trials were written by different keras_egf "
            f"versions: {listed}. Versions can build or train the same "
            "config differently, so their numbers are not comparable; re-run "
            "the older ones (delete their results.json, run the sweep again).")


def mixed_grids_text(grids):
    """"'smoke' (a/grid.json: 12 trials), ..." of `Sweep.grids`."""
    return "; ".join(f"{label} ({plural(n, 'trial')})" for label, n in grids)


def _grid_identity(spec):
    """What makes two grid.json files one experiment: all but the name, the
    objective, the pack size and the seeds (a sweep re-run with other
    seeds adds matched pairs to the same cells)."""
    if not isinstance(spec, dict):
        return repr(spec)
    fixed = {k: v for k, v in (spec.get("fixed") or {}).items() if k != "seed"}
    axes = {k: v for k, v in (spec.get("grid") or {}).items() if k != "seed"}
    return json.dumps({"fixed": fixed, "grid": axes}, sort_keys=True, default=str)


def _folder_grid(root, name):
    """(identity, label) of the grid.json in `root` (`name` below the sweep
    folder)."""
    where = os.path.join(name, files.GRID_FILE) if name != "." else files.GRID_FILE
    try:
        spec = files.read_json(os.path.join(root, files.GRID_FILE))
        return _grid_identity(spec), f"grid {spec.get('name')!r} ({where})"
    except (ValueError, AttributeError):
        return f"unreadable {where}", f"an unreadable {where}"


def read_trial(path, name):
    """The `Trial` `name` of the results.json at `path`, read and checked by
    `keras_egf.results` and holding `REPORT_SETTINGS`; ResultsError if not."""
    results = results_lib.read(
        path, REPORT_SETTINGS,
        f"the report groups trials by {', '.join(REPORT_SETTINGS)}")
    return Trial(name, path, results["config"], results["models"],
                 (results.get("dataset") or {}).get("num_classes"),
                 results_lib.library_version(results))


def _trial_status(root):
    """The status a Keras Tuner trial.json in `root` records (RUNNING when
    it cannot be read)."""
    try:
        return files.read_json(os.path.join(root, "trial.json")).get("status") or "RUNNING"
    except (ValueError, AttributeError):
        return "RUNNING"


class _Reading:
    """What `load_sweep` has found so far."""

    def __init__(self, sweep_dir, strict):
        self.sweep_dir, self.strict = sweep_dir, strict
        self.trials, self.incomplete = [], []
        self.grid_of = {}  # folder -> (identity, label) of the sweep it lies in
        self.counts = {}  # identity -> [label, trials]

    def folder(self, root, names):
        name = os.path.relpath(root, self.sweep_dir)
        grid = (self.grid_of.get(os.path.dirname(root))
                if root != self.sweep_dir else None)
        if files.GRID_FILE in names:
            grid = _folder_grid(root, name)
        self.grid_of[root] = grid
        if "results.json" in names:
            self.results(os.path.join(root, "results.json"), name, grid)
        elif "trial.json" in names:  # a Keras Tuner trial without results
            status = _trial_status(root)
            self.incomplete.append(name if status == "RUNNING"
                                   else f"{name} ({status.lower()})")

    def results(self, path, name, grid):
        try:
            self.trials.append(read_trial(path, name))
        except results_lib.ResultsError as e:
            if self.strict:
                raise ValueError(f"{path}: not a keras-egf results file "
                                 f"({e.why})") from None
            kind = "invalid" if e.kind == "invalid" else "unreadable"
            self.incomplete.append(f"{name} (failed: {kind} results.json: {e.why})")
            return
        key, label = grid or (None, "outside any sweep (no grid.json)")
        self.counts.setdefault(key, [label, 0])[1] += 1

    def check_found(self):
        """ValueError when no results.json was read."""
        if self.trials:
            return
        failed = [i for i in self.incomplete if "(failed: " in i]
        if failed:
            raise ValueError(f"sweep_dir={self.sweep_dir!r}: no readable results.json "
                             f"found; unreadable or invalid: {'; '.join(failed)}")
        raise ValueError(f"sweep_dir={self.sweep_dir!r}: no results.json found "
                         "(has the sweep run? keras-egf-sweep --output_dir=...)")


def load_sweep(sweep_dir, strict=False, allow_mixed_grids=False):
    """Reads every results.json below `sweep_dir` (a sweep's trial_* folders,
    or any folder of keras-egf-train outputs).

    Each is read and checked as the sweep reads it (`keras_egf.results`).
    An unreadable or invalid results.json is listed in `Sweep.incomplete`
    as failed and the rest is read; with `strict` it raises ValueError
    instead. Results of different grids (the grid.json of the sweep folder
    each lies in, seeds aside; results outside any sweep count as one more)
    are refused, naming each grid and its trial count, unless
    `allow_mixed_grids` (then `Sweep.grids` lists them).
    """
    if not os.path.isdir(sweep_dir):
        raise ValueError(f"sweep_dir={sweep_dir!r}: not a folder")
    reading = _Reading(sweep_dir, strict)
    for root, dirs, names in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if d != "tensorboard")
        reading.folder(root, names)
    reading.check_found()
    grids = [tuple(v) for v in reading.counts.values()] if len(reading.counts) > 1 else []
    if grids and not allow_mixed_grids:
        raise ValueError(
            f"sweep_dir={sweep_dir!r} holds the results of {len(grids)} different "
            f"grids: {mixed_grids_text(grids)}. They are not one experiment: "
            "point `sweep_dir` at one sweep's folder, or pass "
            "`allow_mixed_grids=True` to report them together")
    return Sweep(sweep_dir, reading.trials, reading.incomplete, grids)
