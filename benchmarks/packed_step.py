"""The packed trainer's measured step against its plain step.

`keras_egf.packing.PackedTrainer` measures gf/EGF on every step (the four
reductions with a member axis); its plain step here is the same trainer
with the measures replaced by zeros before its step is traced. Members:
`--points` grid points of one pack (MLP on the bundled MNIST subset, width
`--width`, Adam, batch 128, one seed each), two members a point (sparse
and dense). Timing as `benchmarks.run`: one process, a warm-up, rounds
alternating the two trainers over the same batches (taken once from the
pipeline, so its cost is left out); each ratio is per round.

    python -m benchmarks.packed_step [--points 8] [--width 64] [--rounds 6] [--no-write]
"""

import argparse
import statistics
import time

from benchmarks.common import ratio_row, write_summary_section

TARGET = 1.05
VARIANTS = ("plain", "measured")


def configs(points, width):
    """One pack's configs: `points` seeds of one MLP setting."""
    from keras_egf.config import ComparisonConfig
    return [ComparisonConfig(dataset="mnist5k", depth=1, dense_width=width,
                             sparse_width_multiplier=2.0, epochs=1,
                             batch_size=128, learning_rate=0.01,
                             optimizer="adam", egf_batches=1, seed=seed)
            for seed in range(points)]


def trainer(points, width, measured):
    """A PackedTrainer of `configs(points, width)`; unless `measured`, its
    measures are zeros (set before its step is traced)."""
    import tensorflow as tf

    from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS
    from keras_egf.packing.members import build_members
    from keras_egf.packing.trainer import PackedTrainer

    packed = PackedTrainer(build_members(configs(points, width)))
    if not measured:
        k = len(packed.members)
        packed._measures = lambda *args, **kwargs: {
            m: tf.zeros(k) for m in GRADIENT_FLOW_METRICS}
    return packed


def _epoch(packed, batches):
    import tensorflow as tf
    measure = tf.constant(True)
    start = time.perf_counter()
    for x, y in batches:
        losses = packed._plain_step(x, y, measure)
    float(losses[0])
    return time.perf_counter() - start


def measure(points=8, width=64, rounds=6, steps=10):
    """{variant: [seconds per `steps` steps, per round]} and the members."""
    trainers = {v: trainer(points, width, v == "measured") for v in VARIANTS}
    first = trainers["measured"]
    train = first._stacked([m.datasets.train for m in first.members])
    batches = [b for _, b in zip(range(steps), train)]
    for packed in trainers.values():
        _epoch(packed, batches)  # traces and warms up
    times = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
            times[v].append(_epoch(trainers[v], batches))
    return times, len(first.members)


def report(times, members, points, width, rounds, steps):
    return "\n".join([
        "## Packed trainer: measured / plain step (benchmarks/packed_step.py)",
        "", f"{members} members ({points} points x sparse/dense), MLP width "
        f"{width} on the MNIST subset, Adam, batch 128, {steps} steps a round, "
        f"{rounds} alternating rounds; plain step "
        f"{statistics.median(times['plain']) / steps * 1e3:.1f} ms.", "",
        "| ratio | members | median | min | max | target | met |",
        "|---|---|---|---|---|---|---|",
        ratio_row("packed measured / plain", members, times["measured"],
                  times["plain"], TARGET)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not write benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    for name in ("points", "width", "rounds", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1. Received: "
                         f"--{name}={getattr(args, name)}")
    times, members = measure(args.points, args.width, args.rounds, args.steps)
    text = report(times, members, args.points, args.width, args.rounds,
                  args.steps)
    print(text)
    write_summary_section("packed_step", text, write=not args.no_write)
    return text


if __name__ == "__main__":
    main()
