r"""Sweeps an experiment grid with Keras Tuner, one SC-SDC comparison a trial.

    keras-egf-sweep --grid=configs/grids/smoke.json --output_dir=runs/smoke

Each trial's results.json and TensorBoard logs go to OUTPUT_DIR/trial_*/.
Re-running the same command resumes: finished trials are kept, an
interrupted or failed trial is re-run from scratch. OUTPUT_DIR must be new,
empty or a sweep; one process at a time runs in it (a lock file names it),
unless they run as chief and workers. A trial that fails (its folder cannot
be written, say) makes the sweep exit 1 naming it, once the others are done.

Distributed (Keras Tuner chief/worker; every process gets the same flags):
    KERASTUNER_TUNER_ID=chief  KERASTUNER_ORACLE_IP=127.0.0.1 \
        KERASTUNER_ORACLE_PORT=8000 keras-egf-sweep --grid=... --output_dir=...
    KERASTUNER_TUNER_ID=tuner0 KERASTUNER_ORACLE_IP=127.0.0.1 \
        KERASTUNER_ORACLE_PORT=8000 keras-egf-sweep ... --threads=1
The chief hands out grid points and exits when all are done; workers train.
A trial whose worker sends no heartbeat (--heartbeat_s) for --worker_timeout_s
is re-queued for another worker; a worker exits 1 naming the chief's address
when no chief answers for --chief_timeout_s; a second chief on a port in use
exits 2. A missing or damaged oracle.json, trial.json or grid.json is named
and rebuilt from the trials' results.json (single process or chief).
"""

import os
import sys

from absl import app
from absl import flags

from trainers import EXIT_INTERRUPTED, fail, run_binary

FLAGS = flags.FLAGS
flags.DEFINE_string("grid", None, "Grid JSON file (configs/grids/...).")
flags.DEFINE_string("output_dir", "runs/sweep", "Tuner directory of the sweep.")
flags.DEFINE_list("seeds", None, "Seeds to repeat every grid point with "
                  "(adds a `seed` axis; overrides the grid's seed).")
flags.DEFINE_integer("max_trials", None, "Run at most this many grid points.")
flags.DEFINE_integer("verbose", 2, "Progress inside a trial: 2 one line per "
                     "epoch (and which model trains), 1 Keras's progress bars, "
                     "0 nothing but the line each finished trial prints.",
                     lower_bound=0, upper_bound=2)
flags.DEFINE_enum("objective", None, ["sparse_test_accuracy", "dense_test_accuracy",
                                      "sparse_minus_dense_accuracy"],
                  "Tuner objective (maximised); overrides the grid's `objective`.")
flags.DEFINE_bool("overwrite", False, "Delete OUTPUT_DIR's sweep and start over "
                  "instead of resuming (refused if OUTPUT_DIR holds anything "
                  "keras-egf did not write; chief or single process only).")
flags.DEFINE_bool("allow_small_dataset", False, "Train grid points whose "
                  "batch_size is larger than the training set (every epoch "
                  "one step on all of it); refused otherwise.")
flags.DEFINE_integer("threads", 0, "TensorFlow threads of this process (0: all "
                     "cores). With N workers on one machine use cores / N.")
flags.DEFINE_integer("pack", 1, "Train up to this many compatible grid points "
                     "(same settings but seed, learning rate and widths) as one "
                     "vectorised model per trial (1: one point a trial).",
                     lower_bound=1)
flags.DEFINE_float("heartbeat_s", 10.0, "Chief and workers: a worker tells the "
                   "chief this often that it still runs its trial.")
flags.DEFINE_float("worker_timeout_s", 120.0, "Chief: a trial whose worker has "
                   "sent nothing for this long (killed, or cut off) is "
                   "re-queued for another worker.")
flags.DEFINE_float("chief_timeout_s", 120.0, "Worker: exit (naming the "
                   "address) when no chief answers for this long.")
flags.DEFINE_bool("mirrored", False, "Run each trial under "
                  "tf.distribute.MirroredStrategy over all visible GPUs (needs "
                  ">= 2 GPUs; with fewer, trials run on one device and a "
                  "warning says so).")
flags.mark_flag_as_required("grid")
flags.register_validator("max_trials", lambda v: v is None or v >= 1,
                         message="--max_trials must be >= 1")
flags.register_validator("threads", lambda v: v is not None and v >= 0,
                         message="--threads must be >= 0")
for _name in ("heartbeat_s", "worker_timeout_s", "chief_timeout_s"):
    flags.register_validator(_name, lambda v: v is not None and v > 0,
                             message=f"--{_name} must be > 0")


# The library's arguments of the same name as these flags: its errors say
# them as flags (`trainers.as_flags`).
FLAG_ARGUMENTS = ("grid", "seeds", "pack", "overwrite", "output_dir", "mirrored",
                  "max_trials", "allow_small_dataset")


def _parse_seeds(values):
    seeds = []
    for v in values:
        try:
            seeds.append(int(v))
        except ValueError:
            raise ValueError(f"--seeds: {v!r} is not an integer") from None
    return seeds


def _fail(message):
    return fail("keras-egf-sweep", message, flags=FLAG_ARGUMENTS)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}", exitcode=2)
    # keras_egf loads TensorFlow for seconds: not for --help or a bad flag
    from keras_egf import data

    role = os.environ.get("KERASTUNER_TUNER_ID")
    try:
        grid = _load_grid()
        _check_datasets(grid)
        output_dir = _checked_output_dir(role)
        _set_threads()
        _check_trainable(grid)  # after the threads: reading data starts TensorFlow
        strategy = _strategy()
    except (ValueError, data.DatasetNotPreparedError) as e:
        return _fail(e)
    return _locked(output_dir, role, lambda: _sweep(grid, output_dir, role, strategy))


def _load_grid():
    """The grid of --grid, with --objective and --seeds applied."""
    from keras_egf import grid as grid_lib  # loads TensorFlow: see main

    grid = grid_lib.load_grid(FLAGS.grid)
    if FLAGS.objective is not None:
        grid = grid_lib.parse_grid({**grid.to_dict(), "objective": FLAGS.objective},
                                   source=FLAGS.grid)
    if FLAGS.seeds is not None:
        grid = grid_lib.parse_grid(grid.with_seeds(_parse_seeds(FLAGS.seeds)).to_dict(),
                                   source=FLAGS.grid)
    return grid


def _check_datasets(grid):
    """An unprepared tfds dataset fails here, not in every trial."""
    from keras_egf import data  # loads TensorFlow: see main

    for dataset, data_dir in sorted({(c.dataset, c.data_dir or "") for _, c in
                                     grid.configs_over(("dataset", "data_dir"))}):
        data.check_available(dataset, data_dir or None)


def _checked_output_dir(role):
    """--output_dir, checked for a sweep (links resolved)."""
    from keras_egf import files  # loads TensorFlow: see main

    if FLAGS.overwrite and role not in (None, "chief"):
        raise ValueError(f"--overwrite with KERASTUNER_TUNER_ID={role!r}: "
                         "only the chief (or a single process) may start over")
    return files.check_sweep_output_dir(FLAGS.output_dir, FLAGS.overwrite)


def _set_threads():
    if FLAGS.threads:
        import tensorflow as tf  # loads for seconds: only when asked

        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)


def _check_trainable(grid):
    """Refuses grid points that would train on nothing useful
    (`experiment.check_trainable`), naming the first."""
    from keras_egf import experiment  # loads TensorFlow: see main

    num_train = {}  # one config per combination of what the check reads
    for point, config in grid.configs_over(experiment.TRAINABLE_SETTINGS):
        key = (config.dataset, config.data_dir, config.arch == "mlp")
        if key not in num_train:
            num_train[key] = experiment.num_train_examples(config)
        try:
            experiment.check_trainable(config, num_train[key],
                                       FLAGS.allow_small_dataset)
        except ValueError as e:
            raise ValueError(f"grid point {point}: {e}") from None


def _strategy():
    """The strategy of --mirrored (None without it, or with < 2 GPUs)."""
    # Keras Tuner loads here, before the folder is locked or written: a
    # Ctrl-C while it loads leaves nothing behind
    from keras_egf import sweep

    if not FLAGS.mirrored:
        return None
    strategy = sweep.mirrored_strategy()
    if strategy is None:
        print("--mirrored: fewer than 2 GPUs visible; trials run on one device.")
        return None
    if FLAGS.pack > 1:
        raise ValueError(f"--pack={FLAGS.pack}: packed trials run on one device "
                         "(drop --mirrored)")
    print(f"--mirrored: {strategy.num_replicas_in_sync} replicas per trial.")
    return strategy


def _locked(output_dir, role, run_sweep):
    """`run_sweep()` holding the folder's lock: one process per sweep
    folder, unless chief and workers share it (then only the chief locks)."""
    from keras_egf import files  # loads TensorFlow: see main

    lock = files.FolderLock(output_dir) if role in (None, "chief") else None
    try:
        took_over = lock.acquire() if lock else None
    except ValueError as e:
        return _fail(e)
    try:
        if took_over:
            print(f"Warning: {took_over}.", flush=True)
        return run_sweep()
    finally:
        if lock:
            lock.release()


def _sweep(grid, output_dir, role, strategy):
    """The sweep in `output_dir` (checked, and locked where the oracle
    lives)."""
    oracle_here = role in (None, "chief")  # one process, or the chief
    try:
        _clear_or_tidy(output_dir)
        tuner = _tuner(grid, output_dir, oracle_here, strategy)
    except ValueError as e:
        return _fail(e)
    if oracle_here:
        _requeue_broken(tuner)
    _say_skipped(grid)
    hparams_dir = os.path.join(tuner.project_dir, "hparams")
    if oracle_here and not os.path.isdir(hparams_dir):
        from keras_egf import sweep  # loads TensorFlow: see main

        sweep.write_hparams_config(hparams_dir, grid)  # the HParams dashboard
    _say_start(grid, tuner, role)
    return _search(tuner, role)


def _clear_or_tidy(output_dir):
    """--overwrite: clears the folder (only what keras-egf wrote, checked
    before); else removes the temporary files killed runs left in it."""
    from keras_egf import files  # loads TensorFlow: see main

    if FLAGS.overwrite:
        files.clear_output_dir(output_dir, keep=(files.SWEEP_LOCK,))
    elif os.path.isdir(output_dir):
        left = files.remove_sweep_leftovers(output_dir)
        if left:
            print(f"Removed {len(left)} temporary file(s) that killed runs "
                  "left: " + ", ".join(os.path.relpath(p, output_dir) for p in left),
                  flush=True)


def _tuner(grid, output_dir, oracle_here, strategy):
    """The sweep's tuner, its grid checked against grid.json (rewritten
    where the oracle lives when damaged)."""
    from keras_egf import sweep  # loads TensorFlow: see main

    grid_damaged = sweep.check_same_grid(output_dir, grid, FLAGS.pack)
    if grid_damaged and not oracle_here:
        raise sweep.grid_file_error(output_dir, grid_damaged)
    tuner = sweep.SCSDCTuner(grid, max_trials=FLAGS.max_trials, strategy=strategy,
                             pack=FLAGS.pack,
                             allow_small_dataset=FLAGS.allow_small_dataset,
                             heartbeat_s=FLAGS.heartbeat_s,
                             worker_timeout_s=FLAGS.worker_timeout_s,
                             chief_timeout_s=FLAGS.chief_timeout_s,
                             verbose=FLAGS.verbose,
                             directory=os.path.dirname(output_dir),
                             project_name=os.path.basename(output_dir))
    if grid_damaged:
        print(sweep.repair_grid_file(tuner, grid_damaged), flush=True)
    return tuner


def _requeue_broken(tuner):
    from keras_egf import sweep  # loads TensorFlow: see main

    requeued = sweep.requeue_broken_trials(tuner)
    if requeued:
        print(f"Re-queued {len(requeued)} finished trial(s) whose results "
              "are missing or unreadable: " + "; ".join(
                  f"trial_{tid} ({why})" for tid, why in requeued), flush=True)


def _say_skipped(grid):
    skipped = grid.skipped_points()
    if skipped:
        print(f"Left out {len(skipped)} grid point(s) with skip connections at "
              "depth 1: skip connections join equal-width hidden layers, so a "
              "1-hidden-layer network has none and these points would repeat "
              "their cells without SC.", flush=True)


def _say_start(grid, tuner, role):
    """The sweep's first line; a warning when finished results were
    written by another keras_egf version."""
    from keras_egf.report import plural  # loads TensorFlow: see main

    done = len(tuner.finished_trials())
    packs = (f" (packs of up to {FLAGS.pack} of the {plural(grid.size(), 'point')})"
             if FLAGS.pack > 1 else "")
    print(f"Sweep {grid.name!r}: {plural(tuner.total_trials, 'trial')}{packs} into "
          f"{FLAGS.output_dir}"
          + (f" ({done} already finished)" if done else "")
          + (f" as {role}" if role else ""), flush=True)
    if done:
        _warn_other_versions(tuner.finished_versions())


def _warn_other_versions(versions):
    import keras_egf  # loads TensorFlow: see main

    older = {v: n for v, n in versions.items() if v != keras_egf.__version__}
    if older:
        listed = ", ".join(f"{n} by {v}" for v, n in sorted(older.items()))
        print(f"Warning: finished results in {FLAGS.output_dir} were written by "
              f"another keras_egf version ({listed}); this is "
              f"{keras_egf.__version__}. Versions can build or train the same "
              "config differently, so the report would mix numbers that are "
              "not comparable: delete those results.json files to re-run "
              "them (or start over with --overwrite).", flush=True)


def _search(tuner, role):
    """Runs the search; the exit code."""
    from keras_egf import distributed  # loads TensorFlow: see main
    from keras_egf import interrupts

    try:
        tuner.search(verbose=0)
    except ValueError as e:  # the chief's port is in use
        if role != "chief":
            raise
        return _fail(e)
    except distributed.ChiefError as e:
        sys.stderr.write(f"keras-egf-sweep: error: {e}\n")
        return 1
    except BaseException as e:  # an interrupt may surface as another error
        if not interrupts.is_interrupt(e):
            raise
        print("\nInterrupted. Finished trials are kept; run the same command "
              "again to resume.", flush=True)
        return EXIT_INTERRUPTED
    return _say_done(tuner)


def _say_done(tuner):
    """The last lines; exit 1 when a trial failed."""
    from keras_egf.report import plural  # loads TensorFlow: see main

    print(f"Done: {len(tuner.finished_trials())}/"
          f"{plural(tuner.total_trials, 'trial')} in "
          f"{FLAGS.output_dir}. Report: keras-egf-report --sweep_dir="
          f"{FLAGS.output_dir} --output_dir={FLAGS.output_dir}/report")
    if tuner.failed:
        sys.stderr.write(
            f"keras-egf-sweep: {len(tuner.failed)} trial(s) failed: " + "; ".join(
                f"trial_{tid} ({why})" for tid, why in sorted(tuner.failed.items()))
            + ". Fix the cause and run the same command again to re-run "
            "them.\n")
        return 1
    return 0


def run():
    """Console-script entry point."""
    run_binary(main)


if __name__ == "__main__":
    run()
