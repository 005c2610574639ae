"""Epoch time of the masked MLP with EGF on every step: JAX against
TensorFlow, with and without XLA, in one run.

The backend is fixed per process, so each (backend, jit) pair is a worker
process of its own (`--worker`), started once: it builds the model
(MLP 784-1024-1024-10, 90 % sparse, uniform random masks,
`gradient_flow_every=1`, Adam, batch 128, 8,192 random samples an epoch),
warms it up, then runs one `fit` epoch whenever the parent asks. The parent
asks the workers in turn, in alternating order round by round, so only one
trains at a time and the rounds interleave the backends; a ratio compares
two workers' epochs of one round (median, min, max). Each epoch is timed
inside `fit` (its start-up left out), each backend with its own input
pipeline for NumPy data.

Without XLA, the JAX backend runs every op eagerly (Keras's
`jit_compile=False`), which is slow by design; the jit=True row is the one
a JAX user runs.

    python -m benchmarks.backends [--rounds 6] [--quick] [--no-write]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.common import (
    epoch_timer, print_and_write, ratio_row, write_summary_section)

RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS_BACKENDS.md")
BACKENDS = ("tensorflow", "jax")
JIT_MODES = (False, True)
SETTINGS = {
    "full": {"shape": (784, 1024, 1024, 10), "samples": 8192, "batch": 128},
    "quick": {"shape": (16, 8, 8, 4), "samples": 256, "batch": 32},
}
TARGET = 1.0  # JAX no slower than TensorFlow


def worker(setting, jit):
    """The worker's loop: builds and warms up the model, prints `ready`,
    then answers each `epoch` line on stdin with the epoch's seconds."""
    import keras
    import numpy as np

    import keras_egf as ke

    shape, samples, batch = (setting["shape"], setting["samples"],
                             setting["batch"])
    rng = np.random.default_rng(0)
    x = rng.random((samples, shape[0]), dtype=np.float32)
    y = rng.integers(0, shape[-1], samples)
    model = ke.build_mlp((shape[0],), list(shape[1:-1]), shape[-1], seed=0,
                         gradient_flow_every=1)
    ke.prune(model, 0.9, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit,
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))

    def epoch():
        timer = epoch_timer(keras)
        history = model.fit(x, y, batch_size=batch, epochs=1, verbose=0,
                            shuffle=False, callbacks=[timer])
        return {"seconds": timer.seconds, "measured": "egf_2" in history.history,
                "backend": keras.backend.backend()}

    epoch()  # traces the step
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "epoch":
            break
        print(json.dumps(epoch()), flush=True)


def _start(mode, backend, jit):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.backends", "--worker",
         f"--mode={mode}", f"--jit={int(jit)}"], cwd=root, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the {backend} jit={jit} worker did not start "
                           f"(exit code {proc.wait()}; run it with --worker "
                           "to see why)")
    return proc


def _ask(proc):
    proc.stdin.write("epoch\n")
    proc.stdin.flush()
    answer = json.loads(proc.stdout.readline())
    if not answer["measured"]:
        raise RuntimeError("a worker's epoch logged no gf/EGF")
    return answer


def measure(rounds=6, mode="full"):
    """{(backend, jit): [seconds per epoch per round]}."""
    workers = {}
    try:
        for backend in BACKENDS:
            for jit in JIT_MODES:
                workers[(backend, jit)] = _start(mode, backend, jit)
        times = {key: [] for key in workers}
        for r in range(rounds):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))
            for key in order:
                answer = _ask(workers[key])
                if answer["backend"] != key[0]:
                    raise RuntimeError(f"worker {key} ran on {answer['backend']}")
                times[key].append(answer["seconds"])
            print(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{b} jit={j} {times[(b, j)][-1]:.3f}s" for b, j in workers),
                flush=True)
        return times
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.stdin.close()
                proc.wait(timeout=60)


def report(times, rounds, mode):
    from benchmarks.run import cpu_name
    setting = SETTINGS[mode]
    shape = "-".join(map(str, setting["shape"]))
    lines = [
        "## JAX / TensorFlow epoch time (benchmarks/backends.py)", "",
        f"Mode: {mode}. Masked MLP {shape}, 90 % sparse, EGF on every step "
        f"(gradient_flow_every=1), Adam, batch {setting['batch']}, "
        f"{setting['samples']} samples an epoch; one worker process per "
        f"backend and jit mode, {rounds} interleaved rounds. CPU: {cpu_name()} "
        f"({os.cpu_count()} cores).", "",
        "| backend | jit | median s/epoch | min | max |", "|---|---|---|---|---|"]
    for (backend, jit), ts in times.items():
        lines.append(f"| {backend} | {jit} | {statistics.median(ts):.3f} | "
                     f"{min(ts):.3f} | {max(ts):.3f} |")
    lines += ["", "| ratio | jit | median | min | max | target | met |",
              "|---|---|---|---|---|---|---|"]
    for jit in JIT_MODES:
        lines.append(ratio_row("jax / tensorflow", jit, times[("jax", jit)],
                               times[("tensorflow", jit)], TARGET))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (the test's mode); writes nothing")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="full", choices=sorted(SETTINGS),
                        help=argparse.SUPPRESS)
    parser.add_argument("--jit", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(SETTINGS[args.mode], bool(args.jit))
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1. Received: --rounds={args.rounds}")
    mode = "quick" if args.quick else "full"
    times = measure(args.rounds, mode)
    text = report(times, args.rounds, mode)
    write = not (args.no_write or args.quick)
    print_and_write(text, RESULTS, write)
    if write:
        write_summary_section("backends", summary(text), write=True)
    return text


def summary(text):
    """The report without its seconds table (RESULTS.md's section)."""
    head, _, rest = text.partition("| backend |")
    return head + "| ratio |" + rest.partition("| ratio |")[2]


if __name__ == "__main__":
    main()
