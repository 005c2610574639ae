"""Ctrl-C that survives TensorFlow.

A SIGINT that lands while TensorFlow's C++ runs Python code (tracing a
`tf.function`, building an op) can come back out as another exception type,
with the KeyboardInterrupt lost on the way; Keras Tuner would then record the
trial as failed and go on. The binaries install `install_handler()`, which
counts each SIGINT before raising KeyboardInterrupt as Python does, so code
that catches an error can still tell it was an interrupt (`requested()`).
Library code only reads the count; installing the handler is the binary's
choice.
"""

import signal

_count = 0


def _on_sigint(signum, frame):
    global _count
    _count += 1
    raise KeyboardInterrupt


def install_handler():
    """Makes SIGINT raise KeyboardInterrupt (as Python's default handler
    does) and be counted for `requested()`. Call from the main thread."""
    signal.signal(signal.SIGINT, _on_sigint)


def requested():
    """True once a SIGINT reached the handler of `install_handler()`."""
    return _count > 0


def is_interrupt(error):
    """True if `error` is, or was raised while unwinding, a Ctrl-C."""
    return isinstance(error, KeyboardInterrupt) or requested()
