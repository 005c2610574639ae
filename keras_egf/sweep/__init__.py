"""The grid sweep: a Keras Tuner tuner whose trial is one SC-SDC comparison.

Each trial runs `experiment.run_comparison` (the training binary's code
path) into the trial's folder under the tuner directory, so its
results.json and TensorBoard logs stay with the oracle's own trial state.

The oracle is Keras Tuner's GridSearch oracle, handing out the grid's points
in file order, each exactly once, to however many workers ask (see
`GridPointOracle`). Keras Tuner owns which points ran: re-running the same
command resumes. Finished trials are not re-run; a trial interrupted by
Ctrl-C or SIGKILL is still "ongoing" in the oracle's saved state, so the
oracle re-queues it on reload and it is re-run from scratch (its folder's
partial TensorBoard logs are cleared first). results.json is only ever
written whole (temp file + rename). A finished trial whose results.json was
later deleted, truncated or corrupted (or whose whole folder was deleted) is
found on the next run (`requeue_broken_trials`) and re-run, as is a trial
that failed (its folder could not be written, say); the other trials'
files are not touched. results.json is read and checked by
`keras_egf.results`, as the report reads it. The oracle's own state
(oracle.json, trial.json) is written whole too; one that is missing or
damaged anyway is rebuilt from the trials' results.json (`rebuild_state`),
and a damaged grid.json is rewritten once the trials are found to be the
grid's (`repair_grid_file`). Chief and workers: `keras_egf.distributed`.

Modules: `tuner` (`SCSDCTuner`), `oracle` (`GridPointOracle` and every use
of Keras Tuner's private state, pinned to the Keras Tuner version it
names), `hparams` (the metric schema and TensorBoard HParams), `repair`
(survey, re-queue and rebuild of a resumed sweep; the grid guard),
`strategy` (`mirrored_strategy`).
"""

from keras_egf.sweep.hparams import METRICS
from keras_egf.sweep.hparams import trial_metrics
from keras_egf.sweep.hparams import write_hparams
from keras_egf.sweep.hparams import write_hparams_config
from keras_egf.sweep.oracle import KERAS_TUNER_VERSION
from keras_egf.sweep.oracle import GridPointOracle
from keras_egf.sweep.oracle import state_problems
from keras_egf.sweep.repair import GRID_FILE
from keras_egf.sweep.repair import check_same_grid
from keras_egf.sweep.repair import grid_file_error
from keras_egf.sweep.repair import rebuild_state
from keras_egf.sweep.repair import repair_grid_file
from keras_egf.sweep.repair import requeue_broken_trials
from keras_egf.sweep.repair import survey_trials
from keras_egf.sweep.strategy import mirrored_strategy
from keras_egf.sweep.tuner import IDLE_POLL_S
from keras_egf.sweep.tuner import SCSDCTuner

__all__ = [
    "GRID_FILE", "IDLE_POLL_S", "KERAS_TUNER_VERSION", "METRICS",
    "GridPointOracle", "SCSDCTuner", "check_same_grid", "grid_file_error",
    "mirrored_strategy", "rebuild_state", "repair_grid_file",
    "requeue_broken_trials", "state_problems", "survey_trials",
    "trial_metrics", "write_hparams", "write_hparams_config",
]
