"""Files the runs write: atomic writes with the umask's normal mode, output
folders that are refused when they hold another run, staged replacement,
and the lock of a sweep's folder.

- `atomic`: every result file (results.json, grid.json, the report's
  .md/.csv/.png) is written whole or not at all, with the mode an ordinary
  `open(path, "w")` gives (so sweeps shared over NFS stay readable by the
  team); `read_json` says why a file cannot be read;
- `leftovers`: temporary names carry their process (`owned_prefix`), so a
  later run removes what a killed one left (`remove_leftovers`);
- `output_dirs`: the checks of an output folder and what keras-egf wrote
  in it (`check_fresh_output_dir`, `check_sweep_output_dir`, ...);
- `staging`: `staged_output_dir`, a run's folder replaced only once the run
  has finished;
- `lock`: `FolderLock`, one process per sweep folder.
"""

from keras_egf.files.atomic import default_file_mode
from keras_egf.files.atomic import default_folder_mode
from keras_egf.files.atomic import finite_or_none
from keras_egf.files.atomic import read_json
from keras_egf.files.atomic import save_figure_atomic
from keras_egf.files.atomic import write_atomic
from keras_egf.files.atomic import write_json_atomic
from keras_egf.files.atomic import write_text_atomic
from keras_egf.files.leftovers import TEMPORARY_MAX_AGE_S
from keras_egf.files.leftovers import is_leftover
from keras_egf.files.leftovers import owned_prefix
from keras_egf.files.leftovers import process_alive
from keras_egf.files.leftovers import remove_leftovers
from keras_egf.files.lock import FolderLock
from keras_egf.files.output_dirs import GRID_FILE
from keras_egf.files.output_dirs import RUN_ENTRIES
from keras_egf.files.output_dirs import SWEEP_ENTRIES
from keras_egf.files.output_dirs import SWEEP_LOCK
from keras_egf.files.output_dirs import SWEEP_MARKERS
from keras_egf.files.output_dirs import check_fresh_output_dir
from keras_egf.files.output_dirs import check_output_dir
from keras_egf.files.output_dirs import check_output_path
from keras_egf.files.output_dirs import check_replaceable
from keras_egf.files.output_dirs import check_sweep_output_dir
from keras_egf.files.output_dirs import clear_output_dir
from keras_egf.files.output_dirs import foreign_entries
from keras_egf.files.output_dirs import output_kind
from keras_egf.files.output_dirs import remove_sweep_leftovers
from keras_egf.files.staging import remove_run_leftovers
from keras_egf.files.staging import run_leftover_prefixes
from keras_egf.files.staging import staged_output_dir

__all__ = [
    "GRID_FILE", "RUN_ENTRIES", "SWEEP_ENTRIES", "SWEEP_LOCK", "SWEEP_MARKERS",
    "TEMPORARY_MAX_AGE_S", "FolderLock", "check_fresh_output_dir",
    "check_output_dir", "check_output_path", "check_replaceable",
    "check_sweep_output_dir", "clear_output_dir", "default_file_mode",
    "default_folder_mode", "finite_or_none", "foreign_entries", "is_leftover",
    "output_kind", "owned_prefix", "process_alive", "read_json",
    "remove_leftovers", "remove_run_leftovers", "remove_sweep_leftovers",
    "run_leftover_prefixes", "save_figure_atomic", "staged_output_dir",
    "write_atomic", "write_json_atomic", "write_text_atomic",
]
