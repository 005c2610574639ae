"""Measured / unmeasured step on the CNN and WRN-16-4, beside the MLP of
`benchmarks.run`: a MaskedModel with `gradient_flow_every=1` (every step
measures gf/EGF) against the same model with `track_gradient_flow=False`,
each 90 % sparse (uniform, random), Adam, random CIFAR-shaped data
(32x32x3, 10 classes), in both jit modes.

The cost of the measure is four reductions over the kernel gradients, so
it is relative to the work a step does per weight: a dense layer's weight
is used once per example, a convolution's once per output position, so
the CNN and the WRN spend far more arithmetic per gradient entry than the
MLP.

Timing as `benchmarks.run`: one process, a warm-up, then rounds that
alternate the two models; each ratio is per round (median, min, max).

    python -m benchmarks.architectures [--rounds 6] [--no-write]
"""

import argparse
import statistics
import time


from benchmarks.common import (
    out_of_time, random_classification, ratio_row, time_epoch,
    write_summary_section)

# name: (builder arguments, batch size, steps per epoch)
ARCHITECTURES = {
    "cnn": ({"kind": "cnn"}, 64, 16),
    "wrn-16-4": ({"kind": "wrn", "depth": 16}, 32, 8),
}
INPUT_SHAPE, CLASSES = (32, 32, 3), 10
TARGET = 1.05
VARIANTS = ("unmeasured", "measured every=1")


def build(ke, architecture, track, size=None):
    """A compiled-ready MaskedModel of `architecture`, 90 % sparse;
    `size`: a (tiny) `widths` for tests."""
    spec = dict(ARCHITECTURES[architecture][0])
    kind = spec.pop("kind")
    from keras_egf.architectures import build_cnn, build_wrn
    builder = build_cnn if kind == "cnn" else build_wrn
    if size is not None:
        spec["widths"] = size
    model = builder(INPUT_SHAPE, CLASSES, seed=0, track_gradient_flow=track,
                    gradient_flow_every=1, **spec)
    ke.prune(model, 0.9, seed=0)
    return model


def measure(architecture, rounds=6, jit_modes=(False, True), steps=None,
            batch=None, size=None, deadline=None):
    """{jit: {variant: [seconds per epoch per round]}} of one architecture
    (`steps`, `batch`, `size` shrink it for tests)."""
    import keras

    import keras_egf as ke

    _, default_batch, default_steps = ARCHITECTURES[architecture]
    batch, steps = batch or default_batch, steps or default_steps
    x, y, dataset = random_classification(batch * steps, INPUT_SHAPE, CLASSES,
                                          batch)
    times = {}
    for i, jit in enumerate(jit_modes):
        until = (None if deadline is None else time.perf_counter()
                 + (deadline - time.perf_counter()) / (len(jit_modes) - i))
        models, functions, iterators = {}, {}, {}
        for variant in VARIANTS:
            model = build(ke, architecture, variant != "unmeasured", size)
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(
                              from_logits=True), jit_compile=jit)
            model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1,
                      verbose=0)  # traces the step inside fit
            models[variant], functions[variant] = model, model.train_function
            iterators[variant] = iter(dataset)
            time_epoch(model, functions[variant], iterators[variant], steps)
        per = {v: [] for v in VARIANTS}
        for r in range(rounds):
            if r and out_of_time(until, sum(per[v][-1] for v in VARIANTS)):
                break
            for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
                per[v].append(time_epoch(models[v], functions[v], iterators[v],
                                     steps))
            print(f"{architecture} jit={jit} round {r + 1}/{rounds}: " + ", ".join(
                f"{v} {per[v][-1]:.3f}s" for v in VARIANTS), flush=True)
        times[jit] = per
    return times


def rows(all_times):
    """Markdown ratio rows `| architecture | jit | median | min | max |
    target | met |` of {architecture: measure(...)}."""
    lines = ["| measured / unmeasured (every=1) | jit | median | min | max "
             "| target | met |", "|---|---|---|---|---|---|---|"]
    for architecture, times in all_times.items():
        for jit, per in times.items():
            lines.append(ratio_row(architecture, jit, per[VARIANTS[1]],
                                   per[VARIANTS[0]], TARGET))
    return lines


def seconds_per_step(all_times):
    """{(architecture, jit): median seconds of an unmeasured step}."""
    out = {}
    for architecture, times in all_times.items():
        steps = ARCHITECTURES[architecture][2]
        for jit, per in times.items():
            out[(architecture, jit)] = statistics.median(per[VARIANTS[0]]) / steps
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not write benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1. Received: --rounds={args.rounds}")
    all_times = {a: measure(a, args.rounds) for a in ARCHITECTURES}
    body = ["## Measured step on the CNN and WRN-16-4 "
            "(benchmarks/architectures.py)", "",
            f"{args.rounds} alternating rounds; batch and steps per epoch: "
            + "; ".join(f"{a} {b}x{s}" for a, (_, b, s) in ARCHITECTURES.items())
            + "; unmeasured step: " + "; ".join(
                f"{a} jit={j} {t * 1e3:.0f} ms"
                for (a, j), t in seconds_per_step(all_times).items()), ""]
    body += rows(all_times)
    text = "\n".join(body)
    print(text)
    write_summary_section("architectures", text, write=not args.no_write)


if __name__ == "__main__":
    main()
