"""The lock file that keeps a second process out of a sweep's folder."""

import datetime
import json
import os
import socket
import tempfile

from keras_egf.files.atomic import default_file_mode
from keras_egf.files.atomic import read_json
from keras_egf.files.leftovers import owned_prefix
from keras_egf.files.leftovers import process_alive
from keras_egf.files.output_dirs import SWEEP_LOCK


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
