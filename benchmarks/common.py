"""Helpers the benchmark scripts share: epoch timing inside `fit`, ratio
rows, and writing the results file."""

import statistics
import time


def epoch_timer(keras):
    """A callback whose `.seconds` is the last epoch's time, from
    on_epoch_begin to on_epoch_end (fit's start-up left out)."""
    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start
    return EpochTimer()


def ratio_row(label, mode, numerators, denominators, target):
    """`| label | mode | median | min | max | <= target | met |` of the
    per-round ratios."""
    rs = [a / b for a, b in zip(numerators, denominators)]
    med = statistics.median(rs)
    return (f"| {label} | {mode} | {med:.3f} | {min(rs):.3f} | {max(rs):.3f} "
            f"| <= {target} | {'yes' if med <= target else 'no'} |")


def print_and_write(text, path, write=True):
    """Prints `text` and (unless `write` is False) writes it atomically."""
    print(text)
    if write:
        from keras_egf.files import write_text_atomic
        write_text_atomic(path, text)
        print(f"Wrote {path}")
