"""absl-flag binaries: keras-egf-train, keras-egf-sweep, keras-egf-report.

Exit codes, the same for all three: 0 done; 2 bad input (a flag, a config
or grid value, a folder that cannot be used), with one line naming it on
stderr; 130 interrupted (Ctrl-C), nothing half-written left behind; 1 any
other failure.
"""

import os
import sys

# TensorFlow's C++ INFO/WARNING lines (oneDNN, CUDA probing) bury the
# binaries' own output; errors still show. Set the variable to override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def fail(program, message):
    """Writes `program: error: message` to stderr; returns EXIT_BAD_INPUT."""
    sys.stderr.write(f"{program}: error: {message}\n")
    return EXIT_BAD_INPUT


def run_binary(main):
    """app.run(main), with flag errors exiting EXIT_BAD_INPUT like config
    errors (absl's own parser exits 1)."""
    from absl import app
    from absl import flags

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            program = os.path.basename(argv[0]) if argv else "keras-egf"
            sys.stderr.write(f"{program}: error: {e}\n"
                             f"Pass --helpfull to see help on flags.\n")
            sys.exit(EXIT_BAD_INPUT)

    from keras_egf import interrupts

    interrupts.install_handler()
    app.run(main, flags_parser=parse)
