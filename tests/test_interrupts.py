"""keras_egf.interrupts in this process: a Ctrl-C inside `held()` waits for
the block's end, then is raised; the SIGINT handler and the count are as
before. (The binaries' handler, `install_handler`, is tested through
subprocesses in test_train.py and test_sweep_recovery.py.)"""

import os
import signal
import threading
import time

import pytest

from keras_egf import interrupts


def test_a_ctrl_c_inside_held_is_raised_when_the_block_is_done():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("a SIGINT is handled in the main thread only")
    handler = signal.getsignal(signal.SIGINT)
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10
            while not interrupts.requested() and time.monotonic() < deadline:
                time.sleep(0.01)  # the handler runs in this (main) thread
            steps.append("counted" if interrupts.requested() else "lost")
            steps.append("block done")
    assert steps == ["counted", "block done"]
    assert signal.getsignal(signal.SIGINT) is handler
    assert not interrupts.requested()  # the count was the block's own


def test_is_interrupt():
    assert interrupts.is_interrupt(KeyboardInterrupt())
    assert not interrupts.is_interrupt(ValueError("x"))
