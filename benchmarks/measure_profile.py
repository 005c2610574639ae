"""Where the per-step measure's time goes, on the benchmark MLP.

The real training step of a 90 %-sparse MLP 784-1024-1024-10 (Adam,
batch 128, `gradient_flow_every=1`) with its measure replaced by parts of
it, each against the untracked step (`track_gradient_flow=False`), in
alternating rounds in one process:

- `full`: the measure as keras-egf takes it;
- `tracker only`: the accumulator updated with constants (no norms);
- `four Means, no norms`: four `keras.metrics.Mean` updated with constants
  (the trackers before this change);
- `L2 norms only`: ||g||_2 and ||g * m||_2 (TensorFlow's single-pass
  L2Loss), no L1 norms.

Prints each variant's extra milliseconds a step (median over rounds) and
its ratio; docs/performance.md reads these. TensorFlow backend.

    python -m benchmarks.measure_profile [--rounds 6] [--jit]
"""

import argparse
import statistics

from benchmarks.common import random_classification, time_epoch

VARIANTS = ("full", "tracker only", "four Means, no norms", "L2 norms only")


def _patched_update(original, variant):
    """A `MaskedModel.update_gradient_flow` doing only `variant`'s part."""
    import keras
    import tensorflow as tf
    from keras import ops

    from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS

    def update(model, grads, masked, scale=None):
        if variant == "full":
            return original(model, grads, masked, scale)
        if variant == "tracker only":
            ones = {m: ops.ones(()) for m in GRADIENT_FLOW_METRICS}
            return model.gradient_flow_tracker.update_state(ones)
        if variant == "four Means, no norms":
            if not hasattr(model, "_profile_means"):
                model._profile_means = [keras.metrics.Mean() for _ in range(4)]
            for mean in model._profile_means:
                mean.update_state(ops.ones(()))
            return None
        norms = [2.0 * tf.nn.l2_loss(g) for g in grads + masked]
        values = {m: tf.add_n(norms) for m in GRADIENT_FLOW_METRICS}
        return model.gradient_flow_tracker.update_state(values)
    return update


def measure(rounds=6, jit=False, samples=8192, batch=128,
            shape=(784, 1024, 1024, 10), variants=VARIANTS):
    """{variant: [seconds per epoch per round]}, "untracked" included."""
    import keras

    import keras_egf as ke
    from keras_egf.model import MaskedModel

    x, y, dataset = random_classification(samples, shape[:1], shape[-1], batch)
    steps = samples // batch
    original = MaskedModel.update_gradient_flow
    models, functions, iterators = {}, {}, {}
    try:
        for name in ("untracked",) + tuple(variants):
            MaskedModel.update_gradient_flow = _patched_update(original, name)
            model = ke.build_mlp((shape[0],), list(shape[1:-1]), shape[-1],
                                 seed=0, gradient_flow_every=1,
                                 track_gradient_flow=name != "untracked")
            ke.prune(model, 0.9, seed=0)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit,
                          loss=keras.losses.SparseCategoricalCrossentropy(
                              from_logits=True))
            model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)  # traces
            models[name], functions[name] = model, model.train_function
            iterators[name] = iter(dataset)
    finally:
        MaskedModel.update_gradient_flow = original

    def epoch(name):
        return time_epoch(models[name], functions[name], iterators[name], steps)

    for name in models:
        epoch(name)
    times = {name: [] for name in models}
    for r in range(rounds):
        for name in (list(models) if r % 2 == 0 else list(reversed(models))):
            times[name].append(epoch(name))
    return times, steps


def report(times, steps, jit):
    base = times["untracked"]
    lines = [f"jit={jit}: untracked step {statistics.median(base) / steps * 1e3:.2f} ms",
             "| variant | extra ms a step (median) | ratio median | min | max |",
             "|---|---|---|---|---|"]
    for name, ts in times.items():
        if name == "untracked":
            continue
        rs = [a / b for a, b in zip(ts, base)]
        extra = statistics.median([(a - b) / steps * 1e3 for a, b in zip(ts, base)])
        lines.append(f"| {name} | {extra:.2f} | {statistics.median(rs):.3f} | "
                     f"{min(rs):.3f} | {max(rs):.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jit", action="store_true", help="XLA-compiled steps")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1. Received: --rounds={args.rounds}")
    times, steps = measure(args.rounds, args.jit)
    text = report(times, steps, args.jit)
    print(text)
    return text


if __name__ == "__main__":
    main()
