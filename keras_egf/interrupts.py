"""Ctrl-C that survives TensorFlow.

A SIGINT that lands while TensorFlow's C++ runs Python code (tracing a
`tf.function`, building an op) can come back out as another exception type,
with the KeyboardInterrupt lost on the way; Keras Tuner would then record the
trial as failed and go on. The binaries install `install_handler()`, which
counts each SIGINT before raising KeyboardInterrupt as Python does, so code
that catches an error can still tell it was an interrupt (`requested()`).
Library code only reads the count; installing the handler is the binary's
choice. A step that must not be cut halfway (replacing a run's folder by
its staging folder) runs under `held()`: a Ctrl-C there takes effect once
the step is done.
"""

import contextlib
import signal
import threading

_count = 0
_held = 0


def _on_sigint(signum, frame):
    global _count
    _count += 1
    if not _held:
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


@contextlib.contextmanager
def held():
    """Runs the block to its end: a Ctrl-C inside it is counted
    (`requested()`) and raised as KeyboardInterrupt when the block is done.
    In the main thread this holds under any SIGINT handler (this module's
    stands in for the block); elsewhere only under `install_handler()`'s."""
    global _count, _held
    swapped = None
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is not _on_sigint:
        swapped = signal.signal(signal.SIGINT, _on_sigint)
    before = _count
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if swapped is not None:
            signal.signal(signal.SIGINT, swapped)
    if _count > before:
        if swapped is not None:  # the binary's count is its own handler's
            _count = before
        raise KeyboardInterrupt
