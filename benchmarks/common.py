"""Helpers the benchmark scripts share: epoch timing (inside `fit`, or of
a train function driven as `fit` drives it), random data, ratio rows, and
writing the results files."""

import os
import re
import statistics
import time

SUMMARY = os.path.join(os.path.dirname(__file__), "RESULTS.md")
_SECTION = re.compile(r"\n<!-- section (\S+) -->\n.*?<!-- /section \1 -->\n", re.S)


def epoch_timer(keras):
    """A callback whose `.seconds` is the last epoch's time, from
    on_epoch_begin to on_epoch_end (fit's start-up left out)."""
    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start
    return EpochTimer()


def time_epoch(model, function, iterator, steps):
    """Seconds for one epoch of `steps` training steps, driven the way
    `fit` drives them (reset_metrics, then the train function per step),
    without fit's per-call start-up and callbacks, which are the same for
    every model and only add noise."""
    model.reset_metrics()
    start = time.perf_counter()
    for _ in range(steps):
        logs = function(iterator)
    float(logs["loss"])  # wait for the last step
    return time.perf_counter() - start


def random_classification(samples, input_shape, classes, batch):
    """(x, y, a repeating tf.data pipeline of full batches of them): seeded
    uniform inputs and random labels."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((samples,) + tuple(input_shape), dtype=np.float32)
    y = rng.integers(0, classes, samples)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(
        batch, drop_remainder=True).cache().repeat()
    return x, y, dataset


def out_of_time(deadline, last_round):
    """Whether another round as long as the last (`last_round` seconds)
    would end after `deadline`, a time.perf_counter() time (None: never)."""
    return deadline is not None and time.perf_counter() + last_round > deadline


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


def _sections(text):
    """{key: marked section} of a results file's text."""
    return {m.group(1): m.group(0) for m in _SECTION.finditer(text)}


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def with_kept_sections(text, path=SUMMARY):
    """`text` (a benchmark's new RESULTS.md body) followed by the sections
    other benchmarks keep in `path` (see `write_summary_section`)."""
    return _SECTION.sub("", text) + "".join(_sections(_read(path)).values())


def write_summary_section(key, body, path=SUMMARY, write=True):
    """Puts `body` (a benchmark's headline rows) into RESULTS.md as section
    `key`, replacing that section and keeping the rest of the file."""
    section = f"\n<!-- section {key} -->\n{body.rstrip()}\n<!-- /section {key} -->\n"
    old = _read(path)
    sections = _sections(old)
    sections[key] = section
    text = _SECTION.sub("", old) + "".join(sections[k] for k in sorted(sections))
    if write:
        from keras_egf.files import write_text_atomic
        write_text_atomic(path, text)
    return text
