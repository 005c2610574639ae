r"""Sweeps an experiment grid with Keras Tuner, one SC-SDC comparison a trial.

    keras-egf-sweep --grid=configs/grids/smoke.json --output_dir=runs/smoke

Re-running the same command resumes. Distributed: start a chief with
KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=127.0.0.1
KERASTUNER_ORACLE_PORT=8000 and workers with KERASTUNER_TUNER_ID=tuner0, ...
and the same other variables and flags.
"""

import os
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("grid", None, "Grid JSON file (configs/grids/...).")
flags.DEFINE_string("output_dir", "runs/sweep", "Tuner directory.")
flags.DEFINE_integer("max_trials", None, "Run at most this many grid points.")
flags.DEFINE_bool("overwrite", False, "Start over instead of resuming.")
flags.DEFINE_integer("threads", None, "TensorFlow intra-op threads per process "
                     "(default: cores / local processes).")
flags.mark_flag_as_required("grid")
flags.register_validator("max_trials", lambda v: v is None or v >= 1,
                         message="--max_trials must be >= 1")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from keras_egf import grid as grid_lib
    try:
        grid = grid_lib.load_grid(FLAGS.grid)
    except ValueError as e:
        sys.stderr.write(f"keras-egf-sweep: error: {e}\n")
        return 2
    import tensorflow as tf
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from keras_egf.sweep import SCSDCTuner
    tuner = SCSDCTuner(grid, max_trials=FLAGS.max_trials,
                       directory=os.path.dirname(os.path.abspath(FLAGS.output_dir)),
                       project_name=os.path.basename(os.path.abspath(FLAGS.output_dir)),
                       overwrite=FLAGS.overwrite)
    print(f"Sweep {grid.name!r}: {tuner.total_trials} trials into {FLAGS.output_dir}")
    tuner.search(verbose=0)
    print(f"Done: {FLAGS.output_dir}")
    return 0


def run():
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
