"""Temporary files and folders named after the process that makes them, so
that a later run can tell one a killed process left behind from one being
written now, and remove it.
"""

import os
import re
import shutil
import socket
import time


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
