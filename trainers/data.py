r"""Prepares the tensorflow-datasets datasets once, on a connected machine.

    keras-egf-data prepare cifar10 --data_dir=$HOME/tensorflow_datasets
    keras-egf-data prepare fashion_mnist cifar10 cifar100 --data_dir=DIR

Downloads each dataset and writes it, ready to read offline, into
--data_dir (tfds's default folder, ~/tensorflow_datasets, when not given);
one already prepared there is left as it is. Then train on it, here or on a
machine you copy DIR to: keras-egf-train --dataset=cifar10 --data_dir=DIR
(in a grid: "data_dir": "DIR" under "fixed"). mnist5k is bundled: nothing to
prepare. (tfds's own `tfds build` needs apache_beam, which this package does
not install; this command needs nothing more than the package.)
"""

import sys

from absl import flags

from keras_egf import data
from keras_egf import interrupts
from trainers import EXIT_INTERRUPTED, fail, run_binary

PROGRAM = "keras-egf-data"
COMMANDS = ("prepare",)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir to prepare "
                    "into (default: tfds's, ~/tensorflow_datasets).")


def main(argv):
    args = argv[1:]
    if not args or args[0] not in COMMANDS or len(args) < 2:
        return fail(PROGRAM, f"expected `{PROGRAM} prepare NAME [NAME ...] "
                    f"--data_dir=DIR` with NAME in {sorted(data.DATASETS)} "
                    f"(--help for more). Received: {' '.join(args) or '(nothing)'}")
    names = args[1:]
    for name in names:
        try:
            data.check_dataset(name)
        except ValueError as e:
            return fail(PROGRAM, e)
    for name in names:
        try:
            prepared = data.prepare(name, FLAGS.data_dir)
        except BaseException as e:  # an interrupt may surface as another error
            if interrupts.is_interrupt(e):
                print(f"\nInterrupted while preparing {name}; run the same "
                      "command again to finish it.", flush=True)
                return EXIT_INTERRUPTED
            if not isinstance(e, Exception):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print(f"{PROGRAM}: error: preparing {name!r} into data_dir="
                  f"{FLAGS.data_dir!r} failed ({type(e).__name__}: {first}). "
                  "It downloads the dataset: run it on a machine with network "
                  "access, then copy the folder.", file=sys.stderr)
            return 1
        if prepared is None:
            print(f"{name}: bundled with keras-egf (nothing to prepare).")
            continue
        counts = (f" ({prepared['train']} train / {prepared['test']} test "
                  "examples)" if prepared["train"] is not None else "")
        print(f"{name}: prepared in {prepared['path']}{counts}. Use it with "
              f"--dataset={name}"
              + (f" --data_dir={FLAGS.data_dir}" if FLAGS.data_dir else "") + ".",
              flush=True)
    return 0


def run():
    """Console-script entry point."""
    run_binary(main, positional=True)


if __name__ == "__main__":
    run()
