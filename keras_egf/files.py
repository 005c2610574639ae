"""Files the runs write: atomic writes with the umask's normal mode, output
folders that are refused when they hold another run, staged replacement.

Every result file (results.json, grid.json, the report's .md/.csv/.png) is
written whole or not at all: into a temporary file in the same folder, then
renamed over the target. The temporary file gets the mode an ordinary
`open(path, "w")` would (0666 minus the umask, e.g. 0644), so sweeps shared
over NFS stay readable by the team.
"""

import json
import math
import os
import re
import shutil
import socket
import tempfile
import time

import numpy as np


def finite_or_none(value):
    """JSON-safe number: NaN/Inf become None (recursively)."""
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _umask():
    mask = os.umask(0o022)  # the only way to read it; restored at once
    os.umask(mask)
    return mask


def default_file_mode():
    """0666 minus the process umask: the mode `open(path, "w")` creates."""
    return 0o666 & ~_umask()


def owned_prefix(prefix):
    """`prefix` + `PID@HOST-`: the name start of a temporary file or folder
    this process makes, so that a later run can tell one a killed process
    left behind (`is_leftover`) from one being written now."""
    return f"{prefix}{os.getpid()}@{socket.gethostname()}-"


# A temporary name's tail: PID@HOST-, then mkstemp/mkdtemp's 8 characters
# and any suffix.
_OWNED = re.compile(r"(?P<pid>\d+)@(?P<host>.+)-[a-z0-9_]{8}(?:\.[^.]*)?")
# A temporary file of unknown owner (an older keras-egf's, or another
# host's) older than this is left over: an atomic write takes seconds.
TEMPORARY_MAX_AGE_S = 3600


def process_alive(pid):
    """False when no process `pid` runs on this host (True when unsure)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a PID we cannot test)
    return True


def is_leftover(path, prefix, max_age_s=TEMPORARY_MAX_AGE_S):
    """True when `path` (a name starting with `prefix`, made by keras-egf)
    was left by a process that is gone: its owner (`owned_prefix`) ran on
    this host and no longer does; with no owner of this host in its name,
    when it is older than `max_age_s` (None: never)."""
    rest = os.path.basename(path)[len(prefix):]
    owner = _OWNED.fullmatch(rest)
    if owner and owner["host"] == socket.gethostname():
        return not process_alive(int(owner["pid"]))
    if max_age_s is None:
        return False
    try:
        return time.time() - os.lstat(path).st_mtime > max_age_s
    except OSError:
        return False


def remove_leftovers(folder, prefixes, max_age_s=TEMPORARY_MAX_AGE_S):
    """Removes the entries of `folder` whose name starts with one of
    `prefixes` and that `is_leftover`; returns their paths."""
    removed = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return removed
    for name in names:
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        path = os.path.join(folder, name)
        if prefix is None or not is_leftover(path, prefix, max_age_s):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def write_atomic(path, write, binary=False):
    """Calls `write(file)` on a temp file beside `path`, then renames it.

    On any error (or KeyboardInterrupt) the temp file is removed and an
    existing `path` is left as it was; one a SIGKILL leaves is named after
    its process (`owned_prefix`), for the next run to remove.
    """
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=owned_prefix(".tmp-"), suffix=suffix,
                               dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path, obj):
    """Writes JSON (NaN/Inf as null) atomically."""
    write_atomic(path, lambda f: json.dump(
        finite_or_none(obj), f, indent=2, sort_keys=True, allow_nan=False))


def write_text_atomic(path, text):
    """Writes text atomically."""
    write_atomic(path, lambda f: f.write(text))


def save_figure_atomic(fig, path, **savefig_kwargs):
    """Saves a matplotlib figure atomically (format from the suffix)."""
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    write_atomic(path, lambda f: fig.savefig(f, format=fmt, **savefig_kwargs),
                 binary=True)


def read_json(path):
    """The JSON object in `path`, or raises ValueError saying why not."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except OSError as e:
        raise ValueError(f"{path}: unreadable ({e.strerror or e})") from None
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


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
    wrote (a run or a sweep): `--overwrite` never deletes anything else."""
    folder = folder or output_dir
    foreign = foreign_entries(folder)
    if not foreign:
        return
    kind = output_kind(folder)
    if kind is None:
        raise ValueError(
            f"output_dir={output_dir!r} is not a keras-egf run or sweep (holds "
            f"{_listing(foreign)}): --overwrite only replaces what keras-egf "
            "wrote; choose a new output_dir")
    raise ValueError(
        f"output_dir={output_dir!r} holds files keras-egf did not write beside "
        f"its {kind} ({_listing(foreign)}): --overwrite would delete them; move "
        "them out or choose a new output_dir")


def check_fresh_output_dir(output_dir, overwrite=False, flag="--overwrite"):
    """Refuses an `output_dir` that already holds files, unless `overwrite`
    and it holds a keras-egf run or sweep (`check_replaceable`).

    Nothing is created here; `staged_output_dir` replaces the folder only
    when the new run has finished. Returns the folder, links resolved.
    """
    real = check_output_path(output_dir)
    if os.path.isdir(real) and os.listdir(real):
        if not overwrite:
            raise ValueError(
                f"output_dir={output_dir!r} is not empty (holds "
                f"{_listing(os.listdir(real))}): pass {flag} to replace it "
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
            "(--overwrite replaces a keras-egf run or sweep)")
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


def run_leftover_prefixes(output_dir):
    """Name starts of the hidden folders `staged_output_dir` makes beside
    `output_dir`: its staging folder and the old folder it replaces."""
    base = os.path.basename(os.path.realpath(output_dir))
    return (f".{base}.partial-", f".{base}.old-")


def remove_run_leftovers(output_dir):
    """Removes the staging and old folders beside `output_dir` that a
    killed run left (`is_leftover`: made by a process of this host that is
    gone); returns their paths."""
    real = os.path.realpath(output_dir)
    return remove_leftovers(os.path.dirname(real), run_leftover_prefixes(real),
                            max_age_s=None)


class staged_output_dir:
    """A context manager: a run writes into a hidden staging folder beside
    `output_dir`; on success the staging folder replaces `output_dir` (an
    old one is removed only then); on any error or Ctrl-C the staging folder
    is removed and `output_dir` is left as it was. The replacement runs to
    its end (`interrupts.held`): a Ctrl-C during it is raised after it.
    Both hidden folders are named after this process (`owned_prefix`), so
    that `remove_run_leftovers` removes those a SIGKILL leaves.

        with staged_output_dir("runs/x") as staging:
            run(staging)
    """

    def __init__(self, output_dir):
        # through a link to a folder: the link stays, its target is replaced
        self.output_dir = os.path.realpath(output_dir)
        self.staging = None

    def __enter__(self):
        parent = os.path.dirname(self.output_dir)
        partial, _ = run_leftover_prefixes(self.output_dir)
        try:
            os.makedirs(parent, exist_ok=True)
            self.staging = tempfile.mkdtemp(prefix=owned_prefix(partial),
                                            dir=parent)
        except OSError as e:
            raise ValueError(f"output_dir={self.output_dir!r}: cannot be "
                             f"written ({e.strerror or e})") from None
        os.chmod(self.staging, 0o777 & ~_umask())  # mkdtemp makes it 0700
        return self.staging

    def __exit__(self, exc_type, exc, tb):
        from keras_egf import interrupts

        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return False
        _, old_prefix = run_leftover_prefixes(self.output_dir)
        with interrupts.held():
            old = None
            if os.path.lexists(self.output_dir):
                old = tempfile.mkdtemp(prefix=owned_prefix(old_prefix),
                                       dir=os.path.dirname(self.output_dir))
                os.rmdir(old)
                os.rename(self.output_dir, old)
            os.rename(self.staging, self.output_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return False


class FolderLock:
    """A lock file naming the process that holds a folder (its PID, host and
    start time), so that a second process refuses the folder.

        lock = FolderLock(folder)
        warning = lock.acquire()  # ValueError if another process holds it
        try: ...
        finally: lock.release()

    The file is made whole before it appears (a hard link from a temporary
    file: exactly one of two racing processes creates it). A lock whose
    process is dead (same host, no such PID: killed before it could remove
    the lock) is taken over; `acquire` then returns a warning saying so.
    """

    def __init__(self, folder, name=SWEEP_LOCK, what="keras-egf-sweep"):
        self.path = os.path.join(folder, name)
        self.what = what
        self.held = False

    def _holder(self):
        try:
            holder = read_json(self.path)
        except ValueError:
            return None
        if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
            return None
        return holder

    def _create(self):
        import datetime
        import socket

        folder = os.path.dirname(self.path)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now().isoformat(timespec="seconds")}
        fd, tmp = tempfile.mkstemp(prefix=owned_prefix(".tmp-"), suffix=".lock",
                                   dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            os.chmod(tmp, default_file_mode())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                raise
            except OSError:  # no hard links here: exclusive create instead
                with open(self.path, "x") as f:
                    json.dump(me, f)
            return True
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)

    def acquire(self):
        """Takes the lock (creating the folder); returns None, or a warning
        when it took over a dead process's lock. ValueError when a live
        process (or one on another host) holds it."""
        import socket

        folder = os.path.dirname(self.path)
        os.makedirs(folder, exist_ok=True)
        warning = None
        if not self._create():
            holder = self._holder()
            if holder is None:
                raise ValueError(
                    f"output_dir={folder!r} has a lock file that cannot be read "
                    f"({self.path}): another {self.what} may be starting in it; "
                    "if none is, delete that file and run again")
            same_host = holder.get("host") == socket.gethostname()
            if not same_host or process_alive(holder["pid"]):
                raise ValueError(
                    f"output_dir={folder!r} is in use by another {self.what} "
                    f"(PID {holder['pid']} on {holder.get('host')}, since "
                    f"{holder.get('started')}; lock file {self.path}): wait "
                    "for it to end or choose another output_dir (several "
                    "processes share a sweep as chief and workers, "
                    "KERASTUNER_TUNER_ID); if that process is gone, delete the "
                    "lock file")
            os.remove(self.path)
            if not self._create():
                raise ValueError(f"output_dir={folder!r}: another {self.what} "
                                 f"took its lock ({self.path}) just now")
            warning = (f"took over the lock of {folder} from PID "
                       f"{holder['pid']} (since {holder.get('started')}), "
                       "which is no longer running")
        self.held = True
        return warning

    def release(self):
        """Removes the lock file if this process holds it."""
        if not self.held:
            return
        self.held = False
        holder = self._holder()
        if holder is not None and holder["pid"] == os.getpid():
            os.remove(self.path)
