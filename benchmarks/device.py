"""The ratios that matter on an accelerator, in one run of under 8 minutes.

On the machine's first GPU (else its CPU), with the other benchmarks'
functions and models, each ratio from interleaved rounds after a warm-up
(median, min and max of the per-round ratios):

- masked / plain: a MaskedModel MLP (90 % sparse, track_gradient_flow=False)
  against the same stock keras.Model (`benchmarks.run`), with and without XLA;
- measured / unmeasured: track_gradient_flow=True, gradient_flow_every=1
  against track_gradient_flow=False (`benchmarks.run`);
- mixed_float16 / float32: the masked model under the mixed_float16 policy
  against float32 (`benchmarks.run`);
- keras-egf / TFMOT: prune_low_magnitude at 90 % sparsity, keras-egf on
  Keras 3 against TFMOT in a tf-keras subprocess (TF_USE_LEGACY_KERAS=1,
  `benchmarks.tfmot`); skipped, with a note, without TFMOT;
- packed / unpacked: trials per hour of keras-egf-sweep --pack=K, K = 16,
  64, 256, against unpacked, on a grid whose points all pack together
  (`benchmarks.packing`; one sweep process each).

A time budget (--budget, 450 s) bounds the run: no round starts that would
end after its part's share, and a sweep still running at the end of the
budget is stopped (its rate then counts the points it finished); the file
says so. Writes benchmarks/RESULTS_DEVICE.md (with a GPU; elsewhere only
with --output) naming the device, the mode and the versions.

`--quick` is the CPU smoke test of this script: tiny sizes, 2 rounds,
K = 2, 4; its figures mean nothing, and it writes only with --output.

    python -m benchmarks.device [--quick] [--rounds N] [--budget S] [--output PATH] [--no-write]
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time

# TFMOT's worker and the sweeps run in processes of their own beside this
# one: each takes the GPU memory it uses, not all of it (before TF starts).
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from benchmarks import packing  # noqa: E402
from benchmarks import run  # noqa: E402
from benchmarks import tfmot  # noqa: E402
from benchmarks.common import print_and_write  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS_DEVICE.md")
COMMAND = "python -m benchmarks.device"
BUDGET_S = 450  # under 8 minutes with start-up and writing
# Deadlines of the round-based parts, as fractions of the budget from the
# start; the sweeps have the rest (time a part leaves goes to the next).
SHARES = {"run": 0.3, "tfmot": 0.5}
SETTINGS = {
    "full": {"rounds": 15, "samples": 8192, "batch": 128,
             "shape": (784, 1024, 1024, 10), "packs": (16, 64, 256),
             "epochs": 3, "widths": (16, 32, 64, 128), "seeds": 64,
             "unpacked_points": 16, "packed_points": 64},
    "quick": {"rounds": 2, "samples": 256, "batch": 128, "shape": (16, 8, 8, 4),
              "packs": (2, 4), "epochs": 1, "widths": (8, 16), "seeds": 2,
              "unpacked_points": 2, "packed_points": 4},
}
JITS = (False, True)
# (label, what it compares, [(mode, numerator, denominator)]); the
# packed rows are added per K (`ratio_rows`).
RUN_RATIOS = (
    ("masked / plain", "s/epoch: MaskedModel MLP, 90 % sparse, "
     "track_gradient_flow=False / the same MLP as a stock keras.Model",
     "masked", "plain"),
    ("measured / unmeasured", "s/epoch: MaskedModel track_gradient_flow=True, "
     "gradient_flow_every=1 / track_gradient_flow=False",
     "masked+egf every=1", "masked"),
    ("mixed_float16 / float32", "s/epoch: the masked MLP under the "
     "mixed_float16 policy (loss scaling) / under float32",
     "masked mixed_float16", "masked"),
)
TFMOT_RATIO = ("keras-egf / TFMOT", "s/epoch: keras-egf prune_low_magnitude "
               "(ConstantSparsity 90 %, updates every 100 steps) on Keras 3 / "
               "TFMOT's on tf-keras (no XLA: tf-keras's default)")
PACK_RATIO = ("packed / unpacked", "trials per hour: keras-egf-sweep --pack=K "
              "/ unpacked (wall time of each sweep process)")


def device():
    """(description, is a GPU) of the device TensorFlow places work on."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return (f"CPU: {run.cpu_name()} ({os.cpu_count()} cores); no GPU "
                "visible", False)
    details = tf.config.experimental.get_device_details(gpus[0])
    name = f"GPU: {details.get('device_name', gpus[0].name)}"
    if details.get("compute_capability"):
        name += " (compute capability {}.{})".format(*details["compute_capability"])
    if len(gpus) > 1:
        name += f"; {len(gpus)} GPUs visible, timed on the first"
    return name + f"; host CPU: {run.cpu_name()} ({os.cpu_count()} cores)", True


def versions(gpu):
    import keras
    import tensorflow as tf

    import keras_egf

    def installed(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    parts = [f"Python {platform.python_version()}", f"TensorFlow {tf.__version__}",
             f"Keras {keras.__version__}",
             f"keras-egf {getattr(keras_egf, '__version__', installed('keras-egf'))}"]
    if gpu:
        build = tf.sysconfig.get_build_info()
        parts += [f"TensorFlow built with CUDA {build.get('cuda_version', '?')}",
                  f"cuDNN {build.get('cudnn_version', '?')}"]
    parts += [f"TFMOT {installed('tensorflow-model-optimization')}",
              f"tf-keras {installed('tf-keras')}"]
    return "; ".join(parts)


def tfmot_available():
    return all(importlib.util.find_spec(m) is not None
               for m in ("tensorflow_model_optimization", "tf_keras"))


def sweep_grid(setting):
    """The sweeps' grid: one pack_key, so every K packs fully; widths vary
    fastest, so the first points of any sweep mix all of them."""
    epochs = setting["epochs"]
    return {"name": "device", "objective": "sparse_test_accuracy",
            "fixed": {"dataset": "mnist5k", "depth": 1, "sparse_width_multiplier": 2.0,
                      "epochs": epochs, "batch_size": 128, "learning_rate": 0.01,
                      "egf_points": min(3, epochs), "egf_batches": 2,
                      "optimizer": "adam", "regularizers": "NR", "activation": "relu"},
            "grid": {"seed": list(range(setting["seeds"])),
                     "dense_width": list(setting["widths"])}}


def measure_sweeps(setting, deadline, work):
    """{label: (wall seconds, points, ended)}: unpacked on the grid's first
    `unpacked_points`, then --pack=K on max(K, packed_points) points; a
    sweep is stopped at `deadline`, one that would start after it skipped
    (absent)."""
    grid = os.path.join(work, "grid.json")
    with open(grid, "w") as f:
        json.dump(sweep_grid(setting), f)
    runs = [("unpacked", [f"--max_trials={setting['unpacked_points']}"])]
    for k in setting["packs"]:
        trials = max(1, setting["packed_points"] // k)
        runs.append((f"pack={k}", [f"--pack={k}", f"--max_trials={trials}"]))
    out = {}
    for label, flags in runs:
        left = deadline - time.perf_counter()
        if left <= 0:
            print(f"{label}: skipped, time budget spent", flush=True)
            continue
        out[label] = packing.timed_sweep(grid, os.path.join(work, label), flags,
                                         timeout=left)
        seconds, points, ended = out[label]
        print(f"{label}: {points} points in {seconds:.1f} s"
              + ("" if ended else " (stopped: time budget)"), flush=True)
    return out


def _per_round(numerators, denominators):
    return [a / b for a, b in zip(numerators, denominators)]


def ratio_rows(setting, run_times, tfmot_times, sweeps):
    """[(label, compares, mode, [values] or None, note)]: every ratio row,
    values None where its part was skipped."""
    rows = []
    for label, compares, a, b in RUN_RATIOS:
        for jit in JITS:
            per = run_times[jit]
            rows.append((label, compares, f"jit={jit}",
                         _per_round(per[a], per[b]), ""))
    for jit in JITS:
        values = None if tfmot_times is None else _per_round(
            tfmot_times[f"gradual jit={jit}"], tfmot_times["tfmot"])
        rows.append((*TFMOT_RATIO, f"jit={jit} (keras-egf)", values,
                     "" if values else "TFMOT not installed"))
    rate = {k: p / s * 3600 for k, (s, p, _) in sweeps.items() if p and s}
    for k in setting["packs"]:
        label = f"pack={k}"
        if label in rate and "unpacked" in rate:
            note = "" if sweeps[label][2] else "stopped by the time budget"
            rows.append((*PACK_RATIO, f"K={k}", [rate[label] / rate["unpacked"]], note))
        else:
            rows.append((*PACK_RATIO, f"K={k}", None, "no trial finished within "
                         "the time budget"))
    return rows


def _seconds_table(run_times, tfmot_times):
    lines = ["| variant | mode | median s/epoch | min | max | rounds |",
             "|---|---|---|---|---|---|"]
    tables = [(f"jit={jit}", run_times[jit]) for jit in JITS]
    if tfmot_times is not None:
        tables.append(("TFMOT part", tfmot_times))
    for mode, per in tables:
        for name, ts in per.items():
            lines.append(f"| {name} | {mode} | {statistics.median(ts):.4f} | "
                         f"{min(ts):.4f} | {max(ts):.4f} | {len(ts)} |")
    return lines


def report(mode, setting, env, run_times, tfmot_times, sweeps, elapsed, budget):
    quick = mode == "quick"
    shape = "-".join(map(str, setting["shape"]))
    rounds = setting["rounds"]
    lines = [
        "# Benchmarks on a device", "",
        f"`{COMMAND}{' --quick' if quick else ''}`. Mode: "
        + ("quick (the CPU smoke test of the script: tiny sizes, "
           f"{rounds} rounds, K = {', '.join(map(str, setting['packs']))}; "
           "its figures mean nothing)" if quick else
           f"full ({rounds} rounds, K = {', '.join(map(str, setting['packs']))})")
        + ".", "",
        f"Device: {env['device']}", "",
        f"Versions: {env['versions']}", "",
        f"Time budget: {budget:.0f} s; used {elapsed:.0f} s.", "",
        "| ratio | compares | mode | median | min | max | rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, compares, mode_, values, note in ratio_rows(
            setting, run_times, tfmot_times, sweeps):
        if values is None:
            lines.append(f"| {label} | {compares} | {mode_} | – | – | – | {note} |")
        elif len(values) == 1:
            lines.append(f"| {label} | {compares} | {mode_} | {values[0]:.3f} | – | – "
                         f"| 1 sweep each{'; ' + note if note else ''} |")
        else:
            lines.append(f"| {label} | {compares} | {mode_} | "
                         f"{statistics.median(values):.3f} | {min(values):.3f} | "
                         f"{max(values):.3f} | {len(values)} |")
    stopped = [f"{mode_}: {len(ts)} of {rounds}" for mode_, ts in
               [(f"masked/plain part jit={j}", run_times[j]["plain"]) for j in JITS]
               + ([("TFMOT part", tfmot_times["tfmot"])] if tfmot_times else [])
               if len(ts) < rounds]
    if stopped:
        lines += ["", "The time budget stopped adding rounds (" + "; ".join(stopped)
                  + " rounds)."]
    lines += [
        "", "## How", "",
        f"masked / plain, measured / unmeasured, mixed_float16 / float32: "
        f"`benchmarks.run.measure`, MLP {shape}, Adam, batch {setting['batch']}, "
        f"{setting['samples']} random samples per epoch; per jit mode the four "
        "models alternate epoch by epoch after a warm-up, each epoch timed as "
        "fit runs it without fit's start-up; a ratio compares two models' "
        "epochs of one round.", "",
        "keras-egf / TFMOT: `benchmarks.tfmot.measure`, the same MLP shape and "
        "data size, keras-egf's gradual pruning with and without XLA against "
        "TFMOT's prune_low_magnitude in a tf-keras subprocess "
        "(TF_USE_LEGACY_KERAS=1), rounds alternating between the processes."
        + ("" if tfmot_times is not None else
           " Skipped: TFMOT (tensorflow-model-optimization, tf-keras) is not "
           "installed."), "",
        "packed / unpacked: `benchmarks.packing.timed_sweep`, one "
        "keras-egf-sweep process per sweep (wall time, its start-up "
        f"included) on a grid of {setting['seeds'] * len(setting['widths'])} "
        f"points (mnist5k, MLP of one hidden layer, widths "
        f"{', '.join(map(str, setting['widths']))} x {setting['seeds']} seeds, "
        f"Adam, {setting['epochs']} epoch(s), sweep defaults: no XLA), all "
        "in one pack_key: unpacked runs its first "
        f"{setting['unpacked_points']} points, --pack=K its first "
        f"max(K, {setting['packed_points']}) points.", "",
        "| sweep | points | wall s | trials per hour | note |", "|---|---|---|---|---|"]
    for label, (seconds, points, ended) in sweeps.items():
        rate = points / seconds * 3600 if seconds else 0
        lines.append(f"| {label} | {points} | {seconds:.1f} | {rate:.0f} | "
                     f"{'' if ended else 'stopped by the time budget'} |")
    lines += ["", *_seconds_table(run_times, tfmot_times)]
    return "\n".join(lines) + "\n"


def measure(setting, budget, start=None):
    """(run times, TFMOT times or None, sweeps) within `budget` seconds of
    `start` (a time.perf_counter() time; now by default)."""
    start = time.perf_counter() if start is None else start
    run_times = run.measure(
        rounds=setting["rounds"], samples=setting["samples"], batch=setting["batch"],
        shape=setting["shape"], every=(1,), mixed=True,
        deadline=start + SHARES["run"] * budget)
    tfmot_times = None
    if tfmot_available():
        tfmot_times, _ = tfmot.measure(
            setting["rounds"], samples=setting["samples"], batch=setting["batch"],
            shape=setting["shape"], variants=("gradual",),
            deadline=start + SHARES["tfmot"] * budget)
    else:
        print("TFMOT is not installed: keras-egf / TFMOT skipped", flush=True)
    with tempfile.TemporaryDirectory() as work:
        sweeps = measure_sweeps(setting, start + budget, work)
    return run_times, tfmot_times, sweeps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke test: tiny sizes, 2 rounds, K = 2, 4; "
                             "writes only with --output")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of each timed part (default: 15, quick 2)")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help="seconds the run may take (default: %(default)s)")
    parser.add_argument("--output", default=None,
                        help=f"results file (default: {os.path.relpath(RESULTS)}, "
                             "written on a GPU only)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if (args.rounds is not None and args.rounds < 1) or not args.budget > 0:
        parser.error(f"--rounds must be >= 1 and --budget > 0. Received: "
                     f"--rounds={args.rounds} --budget={args.budget}")
    start = time.perf_counter()
    mode = "quick" if args.quick else "full"
    setting = dict(SETTINGS[mode])
    if args.rounds is not None:
        setting["rounds"] = args.rounds
    name, gpu = device()
    env = {"device": name, "versions": versions(gpu)}
    print(f"Device: {name}\nMode: {mode}", flush=True)
    run_times, tfmot_times, sweeps = measure(setting, args.budget, start)
    text = report(mode, setting, env, run_times, tfmot_times, sweeps,
                  time.perf_counter() - start, args.budget)
    path = args.output or RESULTS
    write = not args.no_write and (args.output is not None or (gpu and not args.quick))
    if not write and not args.no_write:
        print(f"Not writing {os.path.relpath(path)}: "
              + ("--quick" if args.quick else "no GPU")
              + " (pass --output to write)", file=sys.stderr)
    print_and_write(text, path, write)
    return text


if __name__ == "__main__":
    main()
