"""keras-egf sparse training vs TFMOT's prune_low_magnitude, per epoch.

Same shape (MLP 784-1024-1024-10), sparsity (90 %, ConstantSparsity with a
mask update every 100 steps), optimizer (Adam), batch (128) and data (8,192
random samples). TFMOT runs in a subprocess (TF_USE_LEGACY_KERAS=1: it needs
tf-keras); the rounds alternate between the two processes, each timing one
epoch (from on_epoch_begin to on_epoch_end) at a time. Also: gradual
pruning (updates every 100 steps) vs fixed masks in keras-egf, int8 vs
float32 mask storage (speed), and mask bytes / kernel bytes (int8 masks,
the default).

    python -m benchmarks.tfmot [--rounds 7] [--no-write]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

from benchmarks.common import epoch_timer, out_of_time, print_and_write, ratio_row

RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS_TFMOT.md")
SHAPE, SAMPLES, BATCH, SPARSITY = (784, 1024, 1024, 10), 8192, 128, 0.9

_TFMOT_WORKER = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

shape = %(shape)r
rng = np.random.default_rng(0)
x = rng.random((%(samples)d, shape[0]), dtype=np.float32)
y = rng.integers(0, shape[-1], %(samples)d)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(%(batch)d).cache()
base = tf.keras.Sequential([tf.keras.Input((shape[0],))]
    + [tf.keras.layers.Dense(n, activation="relu") for n in shape[1:-1]]
    + [tf.keras.layers.Dense(shape[-1])])
model = tfmot.sparsity.keras.prune_low_magnitude(
    base, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(%(sparsity)s, 0, frequency=100))
model.compile(tf.keras.optimizers.Adam(1e-3),
              tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))

class Timer(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): self.s = time.perf_counter() - self.t

def epoch():
    t = Timer()
    model.fit(ds, epochs=1, verbose=0,
              callbacks=[t, tfmot.sparsity.keras.UpdatePruningStep()])
    return t.s

epoch()  # warm-up
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(epoch()), flush=True)
"""


def _keras_egf_models(jit, shape=SHAPE, variants=None):
    """{variant: (compiled model, callbacks)}: "gradual", "fixed" and
    "fixed float32-mask", or those of them named in `variants`."""
    import keras

    import keras_egf as ke
    from keras_egf import pruning
    from keras_egf.pruning.conversion import masked_copy

    def base():
        return keras.Sequential(
            [keras.Input((shape[0],))]
            + [keras.layers.Dense(n, activation="relu") for n in shape[1:-1]]
            + [keras.layers.Dense(shape[-1])])

    def compiled(model):
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit)
        return model

    def gradual():
        return compiled(ke.prune_low_magnitude(
            base(), pruning.ConstantSparsity(SPARSITY, 0, frequency=100))), [
                pruning.UpdatePruningStep()]

    def fixed(mask_dtype):
        # Masks fixed from scratch: no schedule, so no UpdatePruningStep.
        model = masked_copy(base(), mask_dtype=mask_dtype)
        ke.prune(model, SPARSITY, method="magnitude")
        return compiled(model), []

    builders = {"gradual": gradual, "fixed": lambda: fixed("int8"),
                "fixed float32-mask": lambda: fixed("float32")}
    return {name: build() for name, build in builders.items()
            if variants is None or name in variants}


def _epoch(model, dataset, callbacks):
    import keras

    timer = epoch_timer(keras)
    model.fit(dataset, epochs=1, verbose=0, callbacks=[timer, *callbacks])
    return timer.seconds


def mask_ratio(model):
    """Bytes of mask variables / bytes of kernel variables."""
    from keras_egf.pruning import masked_layers

    layers = masked_layers(model)
    mask = sum(np.prod(l.mask.shape) * np.dtype(l.mask.dtype).itemsize for l in layers)
    kernel = sum(np.prod(l.kernel.shape) * np.dtype(l.kernel.dtype).itemsize
                 for l in layers)
    return float(mask / kernel)


def measure(rounds, samples=SAMPLES, batch=BATCH, shape=SHAPE, variants=None,
            deadline=None):
    """({"tfmot" or "<variant> jit=<jit>": [seconds per epoch per round]},
    mask bytes / kernel bytes). `variants`: keras-egf's (`_keras_egf_models`;
    "gradual" always); `deadline`: a time.perf_counter() time after which
    no round starts once one has run."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((samples, shape[0]), dtype=np.float32)
    y = rng.integers(0, shape[-1], samples)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    worker = subprocess.Popen(
        [sys.executable, "-c", _TFMOT_WORKER % {"samples": samples, "batch": batch,
                                                "sparsity": SPARSITY,
                                                "shape": tuple(shape)}],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3"))
    if variants is not None:
        variants = {"gradual", *variants}
    try:
        models = {jit: _keras_egf_models(jit, shape, variants) for jit in (False, True)}
        for built in models.values():  # warm-up, while the worker starts
            for model, callbacks in built.values():
                _epoch(model, dataset, callbacks)
        assert worker.stdout.readline().strip() == "ready"
        times = {"tfmot": [], **{f"{n} jit={j}": [] for j in models for n in models[j]}}
        for r in range(rounds):
            if r and out_of_time(deadline, sum(v[-1] for v in times.values())):
                print(f"time budget reached after {r} of {rounds} rounds", flush=True)
                break
            worker.stdin.write("epoch\n")
            worker.stdin.flush()
            times["tfmot"].append(json.loads(worker.stdout.readline()))
            for jit, variants in models.items():
                for name, (model, callbacks) in variants.items():
                    times[f"{name} jit={jit}"].append(_epoch(model, dataset, callbacks))
            print(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
    return times, mask_ratio(models[False]["gradual"][0])


def report(times, ratio, rounds):
    lines = ["# keras-egf vs TFMOT", "",
             f"MLP 784-1024-1024-10, {SPARSITY:.0%} sparsity (ConstantSparsity, "
             f"mask updates every 100 steps), Adam, batch {BATCH}, {SAMPLES} "
             f"samples/epoch, {rounds} alternating rounds after a warm-up; TFMOT "
             "in a tf-keras subprocess. keras-egf's masks are int8 (the "
             "default) except in the float32-mask rows.", "",
             "| variant | median s/epoch | min | max |", "|---|---|---|---|"]
    for k, v in times.items():
        lines.append(f"| {k} | {statistics.median(v):.3f} | {min(v):.3f} | {max(v):.3f} |")
    rows = [("keras-egf gradual / TFMOT", "jit=False", "gradual jit=False", "tfmot", 0.95),
            ("keras-egf gradual / TFMOT", "jit=True", "gradual jit=True", "tfmot", 0.70),
            ("gradual / fixed masks", "jit=False", "gradual jit=False", "fixed jit=False", 1.05),
            ("gradual / fixed masks", "jit=True", "gradual jit=True", "fixed jit=True", 1.05),
            ("int8 masks / float32 masks", "jit=False", "fixed jit=False",
             "fixed float32-mask jit=False", 1.03),
            ("int8 masks / float32 masks", "jit=True", "fixed jit=True",
             "fixed float32-mask jit=True", 1.03)]
    lines += ["", "| ratio | mode | median | min | max | target | met |",
              "|---|---|---|---|---|---|---|"]
    for label, mode, a, b, target in rows:
        lines.append(ratio_row(label, mode, times[a], times[b], target))
    lines.append(f"| mask bytes / kernel bytes | - | {ratio:.3f} | | | <= 0.25 | "
                 f"{'yes' if ratio <= 0.25 else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1. Received: --rounds={args.rounds}")
    times, ratio = measure(args.rounds)
    print_and_write(report(times, ratio, args.rounds), RESULTS, not args.no_write)


if __name__ == "__main__":
    main()
