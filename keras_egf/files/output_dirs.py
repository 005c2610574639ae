"""Output folders: refused when no run can write them or when they hold
another run, recognised as keras-egf's (a run or a sweep) before anything
in them is replaced, and cleared of what killed processes left.

Errors name the library's arguments (`overwrite=True`); the binaries say
their flags instead (`trainers.as_flags`).
"""

import os
import shutil
import tempfile

from keras_egf.files.atomic import read_json
from keras_egf.files.leftovers import owned_prefix
from keras_egf.files.leftovers import remove_leftovers


def check_output_dir(output_dir):
    """Creates `output_dir` and checks it is writable (ValueError if not)."""
    _check_not_empty(output_dir)
    try:
        os.makedirs(output_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=owned_prefix(".probe-"),
                                     dir=output_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"output_dir={output_dir!r}: cannot be written ({e.strerror or e})"
        ) from None


# What keras-egf writes at the top of an output folder: a run
# (keras-egf-train) and a sweep (keras-egf-sweep; Keras Tuner's oracle.json,
# trial_* folders and `<tuner id>.json` files, which hold `{}`).
RUN_ENTRIES = ("results.json", "comparison.png", "tensorboard")
GRID_FILE = "grid.json"
SWEEP_LOCK = ".keras-egf-sweep.lock"
SWEEP_MARKERS = (GRID_FILE, "oracle.json", SWEEP_LOCK)
SWEEP_ENTRIES = SWEEP_MARKERS + ("hparams", "report")
_TEMPORARY = (".tmp-", ".probe-")  # an atomic write's or a check's, for now


def _check_not_empty(output_dir):
    if not output_dir:
        raise ValueError(
            f"output_dir={output_dir!r}: empty; name a folder (an empty "
            "output_dir would write into the working directory, among its "
            "files)")


def _listing(names):
    names = sorted(names)
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")


def check_output_path(output_dir, inside=False):
    """Refuses an `output_dir` no run can write (ValueError naming it):
    empty, a file, under a file, or in a folder that cannot be written
    (`inside`: the folder itself, when it exists, is written into, as a
    sweep does; else its parent, where a staged run is made). Creates
    nothing. Returns the folder with symlinks resolved: a run writes
    through a link to a folder, never replaces the link.
    """
    _check_not_empty(output_dir)
    real = os.path.realpath(output_dir)
    if os.path.exists(real) and not os.path.isdir(real):
        raise ValueError(f"output_dir={output_dir!r}: exists and is not a folder")
    ancestor = real if inside else os.path.dirname(real)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ValueError(f"output_dir={output_dir!r}: cannot be written "
                         f"({ancestor} is not a folder)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir={output_dir!r}: cannot be written "
                         f"({ancestor} is not writable)")
    return real


def _is_tuner_state(path):
    """A Keras Tuner `<tuner id>.json` (its state: `{}`)."""
    try:
        return os.path.getsize(path) < 64 and read_json(path) == {}
    except (OSError, ValueError):
        return False


def output_kind(folder):
    """"sweep" or "run" when keras-egf wrote `folder` (by its marker
    files), else None."""
    names = set(os.listdir(folder))
    if names & set(SWEEP_MARKERS):
        return "sweep"
    return "run" if "results.json" in names else None


def foreign_entries(folder):
    """The names at the top of `folder` that keras-egf did not write (for
    the kind of folder it is; every name if it is neither)."""
    kind = output_kind(folder)

    def ours(name):
        if name.startswith(_TEMPORARY):
            return True
        if kind == "run":
            return name in RUN_ENTRIES
        if kind == "sweep":
            return (name in SWEEP_ENTRIES or name.startswith("trial_")
                    or _is_tuner_state(os.path.join(folder, name)))
        return False

    return sorted(n for n in os.listdir(folder) if not ours(n))


def check_replaceable(output_dir, folder=None):
    """Refuses to replace `output_dir` unless it holds only what keras-egf
    wrote (a run or a sweep): `overwrite` never deletes anything else."""
    folder = folder or output_dir
    foreign = foreign_entries(folder)
    if not foreign:
        return
    kind = output_kind(folder)
    if kind is None:
        raise ValueError(
            f"output_dir={output_dir!r} is not a keras-egf run or sweep (holds "
            f"{_listing(foreign)}): `overwrite=True` only replaces what "
            "keras-egf wrote; choose a new output_dir")
    raise ValueError(
        f"output_dir={output_dir!r} holds files keras-egf did not write beside "
        f"its {kind} ({_listing(foreign)}): `overwrite=True` would delete "
        "them; move them out or choose a new output_dir")


def check_fresh_output_dir(output_dir, overwrite=False):
    """Refuses an `output_dir` that already holds files, unless `overwrite`
    and it holds a keras-egf run or sweep (`check_replaceable`).

    Nothing is created here; `staged_output_dir` replaces the folder only
    when the new run has finished (`keras_egf.files.staging`). Returns the
    folder, links resolved.
    """
    real = check_output_path(output_dir)
    if os.path.isdir(real) and os.listdir(real):
        if not overwrite:
            raise ValueError(
                f"output_dir={output_dir!r} is not empty (holds "
                f"{_listing(os.listdir(real))}): pass `overwrite=True` to replace it "
                "with the new run once that run has finished, or choose a new "
                "output_dir")
        check_replaceable(output_dir, real)
    return real


def check_sweep_output_dir(output_dir, overwrite=False):
    """Refuses an `output_dir` a sweep cannot write or resume in: one
    `check_output_path` refuses, or a non-empty folder that is not a
    keras-egf sweep (with `overwrite`: not a keras-egf run or sweep, or
    one that holds other files too). Creates nothing; returns the folder,
    links resolved."""
    real = check_output_path(output_dir, inside=True)
    if not os.path.isdir(real) or not os.listdir(real):
        return real
    if overwrite:
        check_replaceable(output_dir, real)
        return real
    held = [n for n in os.listdir(real) if not n.startswith(_TEMPORARY)]
    if held and output_kind(real) != "sweep":
        raise ValueError(
            f"output_dir={output_dir!r} is not empty and not a keras-egf sweep "
            f"(holds {_listing(held)}): choose a new or empty output_dir "
            "(`overwrite=True` replaces a keras-egf run or sweep)")
    return real


def remove_sweep_leftovers(sweep_dir):
    """Removes the temporary files (`_TEMPORARY`) that killed processes
    left in a sweep: at its top, in its report/ and in every trial_*/ and
    trial_*/point_*/ folder (`is_leftover`: a process of this host that is
    gone, or of unknown owner and older than TEMPORARY_MAX_AGE_S); returns
    their paths."""
    folders = [sweep_dir, os.path.join(sweep_dir, "report")]
    for name in sorted(os.listdir(sweep_dir)):
        trial = os.path.join(sweep_dir, name)
        if name.startswith("trial_") and os.path.isdir(trial):
            folders.append(trial)
            folders.extend(os.path.join(trial, p) for p in sorted(os.listdir(trial))
                           if p.startswith("point_"))
    return [path for folder in folders
            for path in remove_leftovers(folder, _TEMPORARY)]


def clear_output_dir(folder, keep=()):
    """Removes what keras-egf wrote in `folder` (all of it: the caller has
    checked it with `check_replaceable`), except the names in `keep`."""
    for name in sorted(os.listdir(folder)):
        if name in keep:
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
