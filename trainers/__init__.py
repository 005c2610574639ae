"""absl-flag binaries: keras-egf-train, keras-egf-sweep, keras-egf-report,
keras-egf-data.

Exit codes, the same for all four: 0 done; 2 bad input (a flag, a config
or grid value, a folder that cannot be used), with one line naming it on
stderr; 130 interrupted (Ctrl-C), nothing half-written left behind; 1 any
other failure.
"""

import os
import re
import signal
import sys

from absl import app
from absl import flags

# TensorFlow's C++ INFO/WARNING lines (oneDNN, CUDA probing) bury the
# binaries' own output; errors still show. Set the variable to override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
TENSORFLOW_MISSING = (
    "keras-egf's binaries need TensorFlow (tf.data pipelines, TensorBoard, "
    "Keras Tuner): pip install -e '.[tensorflow]' in a keras-egf "
    "checkout.")


def require_tensorflow():
    """Exits with `TENSORFLOW_MISSING` (code 1) when TensorFlow, the
    binaries' extra, is not installed; the library's core runs without it."""
    try:
        import tensorflow  # noqa: F401  (the binary imports it next anyway)
    except ImportError:
        sys.exit(TENSORFLOW_MISSING)


def _interrupted_while_starting(signum, frame):
    sys.stderr.write("\nInterrupted while starting; nothing was written.\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


# A binary (its console script, or python -m trainers.<name>) imports
# TensorFlow for seconds before `run_binary` installs its handler: a Ctrl-C
# then exits 130 at once, with nothing written, instead of a traceback. And
# it needs its extra: said before its module imports TensorFlow.
if os.path.basename(sys.argv[0]).startswith("keras-egf-") or sys.argv[0] == "-m":
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    require_tensorflow()


def as_flags(message, names):
    """A library error as a binary says it: the library names its
    arguments in backquotes (`overwrite=True`, `pack`); each of `names` (a
    binary flag of the same name) becomes the flag (--overwrite, --pack;
    `name=False`: --noname). Other text is left as it is."""
    def flag(match):
        name, value = match[1], match[2]
        if name not in names:
            return match[0]
        return f"--no{name}" if value == "False" else f"--{name}"

    return re.sub(r"`(\w+)(?:=(True|False))?`", flag, str(message))


def fail(program, message, flags=()):
    """Writes `program: error: message` to stderr, the library's argument
    names among `flags` written as those flags (`as_flags`); returns
    EXIT_BAD_INPUT."""
    sys.stderr.write(f"{program}: error: {as_flags(message, flags)}\n")
    return EXIT_BAD_INPUT


# Sections of absl's --helpfull that --helpfull keeps after the binary's own
# flags: flag files, absl.app (help, debugging) and logging. Flags that
# imported libraries register (absltest, TensorFlow's TPU client, pfor) are
# left out: these binaries do not read them.
ABSL_HELP_SECTIONS = ("absl.flags", "absl.app", "absl.logging")


def _help_sections():
    """{module name: its lines} of absl's full flag help."""
    sections, name = {}, None
    for line in flags.FLAGS.get_help().splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            name = line[:-1]
            sections[name] = []
        elif name is not None and line.strip():
            sections[name].append(line)
    return sections


def help_text(module, full=False):
    """What `--help` (`-?`, `--helpshort`) prints: the binary's docstring and
    its own flags; `full` (`--helpfull`) adds absl's flags
    (`ABSL_HELP_SECTIONS`).

    `module` is the binary's module; absl files the flags of a module run
    as `__main__` (python -m trainers.train) under `sys.argv[0]`.
    """
    own = sys.argv[0] if module.__name__ == "__main__" else module.__name__
    sections = _help_sections()
    text = (module.__doc__ or "").strip() + "\n\nflags:\n"
    text += "\n".join(sections.get(own, [])) + "\n"
    if full:
        for name in ABSL_HELP_SECTIONS:
            if sections.get(name):
                text += f"\n{name}:\n" + "\n".join(sections[name]) + "\n"
    else:
        text += ("\nFlags can also come from a file: --flagfile=FILE.\n"
                 "--helpfull adds absl's flags (logging, debugging).\n")
    return text


def _define_help_flags(module):
    """Replaces absl's --help/-?, --helpshort and --helpfull, which print the
    flags of `__main__` (none for a console script, whose `__main__` is the
    generated stub) or every imported library's, and exit 1, by flags that
    print `help_text(module)` to stdout and exit 0."""
    class HelpFlag(flags.BooleanFlag):
        def __init__(self, name, short_name, full):
            super().__init__(name, False, "show the full help (absl's flags "
                             "too)" if full else "show this help",
                             short_name=short_name, allow_hide_cpp=True)
            self.full = full

        def parse(self, arg):
            if self._parse(arg):
                try:
                    sys.stdout.write(help_text(module, full=self.full))
                    sys.stdout.flush()
                except BrokenPipeError:  # e.g. | head
                    pass
                sys.exit(0)

    app.define_help_flags()  # absl's (app.run then leaves the flags alone)
    for name in ("help", "?", "helpshort", "helpfull"):
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)
    for name, short_name, full in (("help", "?", False), ("helpshort", None, False),
                                   ("helpfull", None, True)):
        flags.DEFINE_flag(HelpFlag(name, short_name, full), module_name="absl.app")


def run_binary(main, positional=False):
    """app.run(main), with flag errors exiting EXIT_BAD_INPUT like config
    errors (absl's own parser exits 1), and --help, --helpshort and
    --helpfull listing the binary's own flags, exit 0 (`help_text`).
    `positional`: the binary takes positional arguments (keras-egf-data's
    `prepare NAME`); others refuse them in one line."""
    _define_help_flags(sys.modules[main.__module__])

    def parse(argv):
        program = os.path.basename(argv[0]) if argv else "keras-egf"
        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            sys.stderr.write(f"{program}: error: {e}\n"
                             f"Pass --helpfull to see help on flags.\n")
            sys.exit(EXIT_BAD_INPUT)
        if len(rest) > 1 and not positional:  # absl's UsageError would print
            # the whole help
            listed = " ".join(repr(a) for a in rest[1:])
            sys.stderr.write(
                f"{program}: error: unexpected argument {listed}: the binary "
                "takes flags only (--name=value; --help lists them)\n")
            sys.exit(EXIT_BAD_INPUT)
        return rest

    # keras_egf imports TensorFlow (seconds): not when this package is
    # imported, so its start-up SIGINT handler above is in place first.
    from keras_egf import interrupts

    interrupts.install_handler()
    try:
        app.run(main, flags_parser=parse)
    except KeyboardInterrupt:  # before main could say what it kept
        sys.stderr.write("\nInterrupted.\n")
        sys.exit(EXIT_INTERRUPTED)
