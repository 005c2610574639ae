r"""Runs ONE SC-SDC comparison: a sparse MLP and its same-capacity dense twin.

    keras-egf-train --flagfile=configs/quickstart.flags --output_dir=runs/quick

Writes into --output_dir: results.json (config, versions, test loss/accuracy,
average and per-point gf/EGF, active weights per layer, wall times),
TensorBoard logs per model (tensorboard --logdir OUTPUT_DIR/tensorboard), and
comparison.png. A non-empty --output_dir is refused unless --overwrite; the
run trains into a hidden staging folder beside it, which replaces it only
when the run has finished (Ctrl-C leaves --output_dir as it was; exit 130).
"""

import os

from absl import app
from absl import flags

from keras_egf import config as config_lib
from keras_egf import data
from keras_egf import experiment
from keras_egf import files
from keras_egf import interrupts
from keras_egf import settings
from trainers import EXIT_INTERRUPTED, fail, run_binary

FLAGS = flags.FLAGS


def define_config_flags():
    """One flag per ComparisonConfig field: its default, help and rule (a
    setting is declared once, in keras_egf/config.py). Fixed choices make
    an enum flag; a registry's (optimizer, arch, pruning) a string flag
    whose help lists the names registered now, checked by `validate`, so a
    name registered after the flags are defined is accepted too."""
    for field in config_lib.fields():
        name, default = field.name, field.default
        help_text, choices = settings.flag_help(field), settings.choices(field)
        if field.type is tuple:
            flags.DEFINE_list(name, list(default), help_text)
        elif choices and not settings.is_registered(field):
            flags.DEFINE_enum(name, default, list(choices), help_text)
        elif field.type is bool:
            flags.DEFINE_bool(name, default, help_text)
        elif field.type is int:
            flags.DEFINE_integer(name, default, help_text)
        elif field.type is float:
            flags.DEFINE_float(name, default, help_text)
        else:
            flags.DEFINE_string(name, default, help_text)


define_config_flags()
flags.DEFINE_string("output_dir", "runs/train", "Where results go (must be "
                    "empty or new, unless --overwrite).")
flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output_dir (once "
                  "the new run has finished) if it holds only a keras-egf run "
                  "or sweep.")
flags.DEFINE_integer("verbose", 1, "Keras verbosity (0, 1 progress bar, 2).")
flags.DEFINE_bool("allow_small_dataset", False, "Train even when --batch_size "
                  "is larger than the training set (every epoch one step on "
                  "all of it); refused otherwise.")


def config_from_flags():
    """A validated ComparisonConfig from the parsed flags; a bad value
    raises ValueError naming its flag (`--name: why`)."""
    values = {}
    for field in config_lib.fields():
        value = FLAGS[field.name].value
        values[field.name] = tuple(value) if field.type is tuple else value
    try:
        return config_lib.ComparisonConfig(**values).validate()
    except config_lib.SettingError as e:
        raise ValueError(f"--{e.setting}: {e}") from None


def _folder_identity(path):
    """(device, inode) of the folder at `path` (links followed), or None: a
    finished run replaces the folder by its staging folder, another one."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st else None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}", exitcode=2)
    before = _folder_identity(FLAGS.output_dir)
    try:
        # The data first: an unprepared dataset is the one problem that the
        # other flags' fixes cannot get past.
        data.check_available(FLAGS.dataset, FLAGS.data_dir)
        config = config_from_flags()
        if FLAGS.output_dir:
            left = files.remove_run_leftovers(FLAGS.output_dir)
            if left:
                print(f"Removed {len(left)} folder(s) that killed runs left: "
                      + ", ".join(left), flush=True)
        results = experiment.run_comparison_into(
            config, FLAGS.output_dir, overwrite=FLAGS.overwrite,
            verbose=FLAGS.verbose, allow_small_dataset=FLAGS.allow_small_dataset)
        print(f"SC-SDC {config.dataset}: {experiment.summary_line(results)}")
        print(f"Results: {FLAGS.output_dir}/results.json, "
              f"{FLAGS.output_dir}/comparison.png; "
              f"tensorboard --logdir {FLAGS.output_dir}/tensorboard")
    except (ValueError, data.DatasetNotPreparedError) as e:
        return fail("keras-egf-train", e,
                    flags=("overwrite", "output_dir", "allow_small_dataset"))
    except BaseException as e:  # an interrupt may surface as another error
        if not interrupts.is_interrupt(e):
            raise
        if _folder_identity(FLAGS.output_dir) not in (before, None):
            # The Ctrl-C came once the finished run had replaced the folder.
            print(f"\nInterrupted after the run finished: its results are in "
                  f"{FLAGS.output_dir}.", flush=True)
            return 0
        print(f"\nInterrupted: {FLAGS.output_dir} is as it was before this "
              "run (nothing of the run was kept).", flush=True)
        return EXIT_INTERRUPTED
    return 0


def run():
    """Console-script entry point."""
    run_binary(main)


if __name__ == "__main__":
    run()
