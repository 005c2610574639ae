"""Per-epoch fit time of masked vs plain MLPs, and per-step gradient flow
tracking on vs off at several intervals (`gradient_flow_every`).

In ONE process, after a warm-up, alternates the models being compared
several times and prints min/median/max of each per-round ratio; writes
benchmarks/RESULTS.md. Model: MLP 784-1024-1024-10, 90% sparsity (uniform,
random), Adam, batch 128, 8,192 random samples per epoch. The target for
measuring every step (`MaskedModel`'s default, gradient_flow_every=1) is
1.05x the untracked step; `benchmarks.architectures` times the CNN and the
WRN-16-4 the same way.

    python -m benchmarks [--rounds 20] [--samples 8192] [--no-write]
"""

import argparse
import os
import platform
import statistics
import time

from benchmarks.common import (
    out_of_time, print_and_write, random_classification, time_epoch,
    with_kept_sections)

RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS.md")
EVERY = (1, 8, 16, 32)  # gradient_flow_every intervals measured
MASKED_TARGET, TRACKING_TARGET = 1.05, 1.05


def _models(keras, ke, jit, shape, every=EVERY, mixed=False):
    """Returns {variant: compiled model} for one jit setting: plain,
    masked, masked+egf at each interval of `every`, and with `mixed` the
    masked model under the mixed_float16 policy too."""
    def compile_(m):
        m.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        return m

    def mlp(masked, **opts):
        m = ke.build_mlp((shape[0],), list(shape[1:-1]), shape[-1],
                         masked=masked, seed=0, **opts)
        if masked:
            ke.prune(m, 0.9, seed=0)
        return m

    plain = mlp(False)
    plain = keras.Model(plain.inputs, plain.outputs)  # stock keras.Model
    models = {
        "plain": compile_(plain),
        "masked": compile_(mlp(True, track_gradient_flow=False)),
    }
    for n in every:
        models[f"masked+egf every={n}"] = compile_(
            mlp(True, track_gradient_flow=True, gradient_flow_every=n))
    if mixed:
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:  # compile wraps the optimizer in a LossScaleOptimizer
            models["masked mixed_float16"] = compile_(
                mlp(True, track_gradient_flow=False))
        finally:
            keras.mixed_precision.set_global_policy(previous)
    return models


def _prepare(model, x, y, batch):
    """Builds and traces `model`'s train function(s) inside `fit` (so the
    masked fast path is the one traced), returns it."""
    model.fit(x[:2 * batch], y[:2 * batch], batch_size=batch, epochs=1,
              verbose=0)  # 2 steps: traces the measuring and the quiet step
    return model.train_function


def measure(rounds=20, samples=8192, batch=128, shape=(784, 1024, 1024, 10),
            every=EVERY, mixed=False, deadline=None):
    """Returns {jit: {variant: [seconds per epoch per round]}}.

    `every`: the gradient_flow_every intervals timed; `mixed`: also the
    masked model under mixed_float16 (`_models`); `deadline`: a
    time.perf_counter() time after which no round starts once one has run,
    the time left shared equally by the jit modes still to run (fewer
    rounds than `rounds` then)."""
    import keras

    import keras_egf as ke

    x, y, dataset = random_classification(samples, shape[:1], shape[-1], batch)
    steps = samples // batch
    times = {}
    for i, jit in enumerate((False, True)):
        until = (None if deadline is None else time.perf_counter()
                 + (deadline - time.perf_counter()) / (2 - i))
        models = _models(keras, ke, jit, shape, every, mixed)
        functions, iterators = {}, {}
        for name, model in models.items():
            # Traced and warmed up one model at a time: TF counts the
            # traces of every model's train function (one Python function)
            # together, and tracing them all back to back printed a
            # spurious "triggered tf.function retracing" warning.
            functions[name] = _prepare(model, x, y, batch)
            iterators[name] = iter(dataset)
            time_epoch(model, functions[name], iterators[name], steps)
        per = {name: [] for name in models}
        for r in range(rounds):
            if r and out_of_time(until, sum(per[n][-1] for n in models)):
                print(f"jit={jit}: time budget reached after {r} of {rounds} "
                      "rounds", flush=True)
                break
            order = list(models) if r % 2 == 0 else list(reversed(models))
            for name in order:
                per[name].append(time_epoch(models[name], functions[name],
                                             iterators[name], steps))
            print(f"jit={jit} round {r + 1}/{rounds}: " + ", ".join(
                f"{n} {per[n][-1]:.3f}s" for n in models), flush=True)
        times[jit] = per
    return times


def ratios(times):
    """{(label, jit): ([per-round ratios], target)}."""
    out = {}
    for jit, per in times.items():
        out[("masked / plain", jit)] = (
            [a / b for a, b in zip(per["masked"], per["plain"])], MASKED_TARGET)
        for every in EVERY:
            on = per[f"masked+egf every={every}"]
            out[(f"EGF every={every} on / off", jit)] = (
                [a / b for a, b in zip(on, per["masked"])], TRACKING_TARGET)
    return out


def cheapest_interval(times):
    """The smallest measured interval whose median tracking cost meets the
    target in every jit mode (None if none does)."""
    table = ratios(times)
    for every in EVERY:
        medians = [statistics.median(table[(f"EGF every={every} on / off", jit)][0])
                   for jit in times]
        if all(m <= TRACKING_TARGET for m in medians):
            return every
    return None


def cpu_name():
    """The CPU's model name (/proc/cpuinfo), else platform's guess."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return cpu


def _environment():
    import keras
    import tensorflow as tf
    return (f"CPU: {cpu_name()}; cores: {os.cpu_count()}; Python "
            f"{platform.python_version()}; TensorFlow {tf.__version__}; "
            f"Keras {keras.__version__}")


def report(times, rounds, samples):
    """Markdown table of seconds per epoch and ratios."""
    lines = [
        "# Benchmark results", "",
        "MLP 784-1024-1024-10, 90% sparsity, Adam, batch 128, "
        f"{samples} samples/epoch, {rounds} alternating rounds after a warm-up, "
        "one process. Each epoch is timed as fit runs it (reset_metrics, then "
        "Keras's train function once per step) without fit's start-up and "
        "callbacks; a ratio compares the two models' epochs of one round.",
        "", _environment(), "",
        "| jit | variant | median s/epoch | min | max |",
        "|---|---|---|---|---|",
    ]
    for jit, per in times.items():
        for name, ts in per.items():
            lines.append(f"| {jit} | {name} | {statistics.median(ts):.3f} | "
                         f"{min(ts):.3f} | {max(ts):.3f} |")
    lines += ["", "| ratio | jit | median | min | max | target | met |",
              "|---|---|---|---|---|---|---|"]
    for (label, jit), (rs, target) in ratios(times).items():
        med = statistics.median(rs)
        lines.append(f"| {label} | {jit} | {med:.3f} | {min(rs):.3f} | "
                     f"{max(rs):.3f} | <= {target} | "
                     f"{'yes' if med <= target else 'no'} |")
    from keras_egf.model import DEFAULT_GRADIENT_FLOW_EVERY
    table = ratios(times)
    lines += ["", "Expected cost of every=N from the every=1 row: unmeasured "
              "steps run the untracked step, so cost(N) = 1 + (cost(1) - 1) / N "
              "(a check on the direct rows above, which the machine's "
              "epoch-to-epoch noise blurs):", "",
              "| jit | cost(1) median | " + " | ".join(
                  f"expected every={n}" for n in EVERY[1:]) + " |",
              "|---|---|" + "---|" * len(EVERY[1:])]
    for jit in times:
        c1 = statistics.median(table[("EGF every=1 on / off", jit)][0])
        lines.append(f"| {jit} | {c1:.3f} | " + " | ".join(
            f"{1 + (c1 - 1) / n:.3f}" for n in EVERY[1:]) + " |")
    lines += ["", f"Smallest interval meeting <= {TRACKING_TARGET} in both jit "
              f"modes (direct medians): {cheapest_interval(times)}; "
              f"MaskedModel's default gradient_flow_every: "
              f"{DEFAULT_GRADIENT_FLOW_EVERY} (docs/performance.md says why "
              "and what the measure costs on this MLP)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not write benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.samples < 128:
        parser.error(f"--rounds must be >= 1 and --samples >= 128. Received: "
                     f"--rounds={args.rounds} --samples={args.samples}")
    times = measure(rounds=args.rounds, samples=args.samples)
    text = report(times, args.rounds, args.samples)
    # RESULTS.md also holds other benchmarks' headline rows: keep them
    print_and_write(with_kept_sections(text, RESULTS), RESULTS, not args.no_write)


if __name__ == "__main__":
    main()
