"""Staged replacement of a run's output folder: the run writes into a
hidden folder beside it, which replaces the folder only once the run has
finished.
"""

import os
import shutil
import tempfile

from keras_egf import interrupts
from keras_egf.files.atomic import default_folder_mode
from keras_egf.files.leftovers import owned_prefix
from keras_egf.files.leftovers import remove_leftovers


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
        os.chmod(self.staging, default_folder_mode())  # mkdtemp makes it 0700
        return self.staging

    def __exit__(self, exc_type, exc, tb):
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
