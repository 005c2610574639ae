"""Atomic writes with the umask's normal mode, and JSON reading that says
why a file cannot be read.

Every result file (results.json, grid.json, the report's .md/.csv/.png) is
written whole or not at all: into a temporary file in the same folder, then
renamed over the target. The temporary file gets the mode an ordinary
`open(path, "w")` would (0666 minus the umask, e.g. 0644), so sweeps shared
over NFS stay readable by the team; it is named after its process
(`owned_prefix`), so that one a killed process left is found and removed
(`keras_egf.files.leftovers`).
"""

import json
import math
import os
import tempfile

import numpy as np

from keras_egf.files.leftovers import owned_prefix


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


def default_folder_mode():
    """0777 minus the process umask: the mode `os.makedirs` creates."""
    return 0o777 & ~_umask()


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
