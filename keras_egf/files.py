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
import shutil
import tempfile

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


def write_atomic(path, write, binary=False):
    """Calls `write(file)` on a temp file beside `path`, then renames it.

    On any error (or KeyboardInterrupt) the temp file is removed and an
    existing `path` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
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
    try:
        os.makedirs(output_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=output_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"output_dir={output_dir!r}: cannot be written ({e.strerror or e})"
        ) from None


def check_fresh_output_dir(output_dir, overwrite=False, flag="--overwrite"):
    """Refuses an `output_dir` that already holds files, unless `overwrite`.

    Nothing is created here; `staged_output_dir` replaces the folder only
    when the new run has finished.
    """
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output_dir={output_dir!r}: exists and is not a folder")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        held = sorted(os.listdir(output_dir))
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise ValueError(
            f"output_dir={output_dir!r} is not empty (holds {shown}): pass "
            f"{flag} to replace it with the new run once that run has "
            "finished, or choose a new output_dir")
    ancestor = os.path.dirname(os.path.abspath(output_dir))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ValueError(f"output_dir={output_dir!r}: cannot be written "
                         f"({ancestor} is not a folder)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir={output_dir!r}: cannot be written "
                         f"({ancestor} is not writable)")


class staged_output_dir:
    """A context manager: a run writes into a hidden staging folder beside
    `output_dir`; on success the staging folder replaces `output_dir` (an
    old one is removed only then); on any error or Ctrl-C the staging folder
    is removed and `output_dir` is left as it was.

        with staged_output_dir("runs/x") as staging:
            run(staging)
    """

    def __init__(self, output_dir):
        self.output_dir = os.path.abspath(output_dir)
        self.staging = None

    def __enter__(self):
        parent = os.path.dirname(self.output_dir)
        try:
            os.makedirs(parent, exist_ok=True)
            self.staging = tempfile.mkdtemp(
                prefix=f".{os.path.basename(self.output_dir)}.partial-",
                dir=parent)
        except OSError as e:
            raise ValueError(f"output_dir={self.output_dir!r}: cannot be "
                             f"written ({e.strerror or e})") from None
        os.chmod(self.staging, 0o777 & ~_umask())  # mkdtemp makes it 0700
        return self.staging

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return False
        old = None
        if os.path.lexists(self.output_dir):
            old = tempfile.mkdtemp(
                prefix=f".{os.path.basename(self.output_dir)}.old-",
                dir=os.path.dirname(self.output_dir))
            os.rmdir(old)
            os.rename(self.output_dir, old)
        os.rename(self.staging, self.output_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False
