"""The benchmarks' results files: RESULTS.md keeps each benchmark's
headline section when another benchmark rewrites it."""

from benchmarks import common
from benchmarks import packing


def test_summary_sections_survive_rewrites(tmp_path):
    path = str(tmp_path / "RESULTS.md")
    common.write_summary_section("packing", "## Packed\n\n| a | 1 |", path)
    common.write_summary_section("dynamic", "## Dynamic\n\n| b | 2 |", path)
    common.write_summary_section("packing", "## Packed\n\n| a | 3 |", path)  # replaced
    text = open(path).read()
    assert text.count("## Packed") == 1 and "| a | 3 |" in text and "| a | 1 |" not in text
    assert "| b | 2 |" in text
    # The main benchmark rewrites the body; both sections stay, once each.
    body = common.with_kept_sections("# Benchmark results\n\n| x | 9 |\n", path)
    open(path, "w").write(body)
    body = common.with_kept_sections("# Benchmark results\n\n| x | 10 |\n", path)
    assert body.startswith("# Benchmark results\n\n| x | 10 |\n")
    assert body.count("## Packed") == 1 and body.count("## Dynamic") == 1
    assert "| x | 9 |" not in body


def test_packing_summary_takes_the_ratio_and_agreement_rows():
    labels = ("unpacked", "pack=16", packing.CONTROL)
    seconds = {"unpacked": 100.0, "pack=16": 20.0, packing.CONTROL: 100.0}
    tables, points = {k: [] for k in labels}, {k: 36 for k in labels}
    text = packing.report("configs/grids/smoke.json", 16, seconds, tables, points,
                          {k: {("p", "sparse"): 1.0} for k in labels})
    summary = packing.summary(16, seconds, tables, points)
    for line in ("| trials per hour, pack=16 / unpacked | 5.00 | >= 4.0 | yes |",
                 "- pack=16: 0 of 0", f"- {packing.CONTROL}: 0 of 0"):
        assert line in summary and line in text  # the same rows in both files


def test_the_main_benchmark_traces_no_function_twice_in_a_burst():
    """`python -m benchmarks` printed TensorFlow's "N out of the last M
    calls ... triggered tf.function retracing" twice: every model's train
    function was traced back to back before any was warmed up, and TF
    counts the traces of all of them (one Python function) together. Each
    is traced once; prepared and warmed up one model at a time, no warning.
    A fresh process: TF warns at most twice per function per process."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("from benchmarks import run\n"
            "times = run.measure(rounds=1, samples=1536, shape=(16, 8, 8, 4))\n"
            "print(sorted(times[False]))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'masked+egf every=32'" in proc.stdout  # every variant timed
    assert "retracing" not in proc.stderr + proc.stdout, proc.stderr[-3000:]


def test_device_benchmark_quick_mode_has_every_ratio(tmp_path):
    """`python -m benchmarks.device --quick`, the CPU run of the GPU
    benchmark (tiny sizes, 2 rounds, K = 2, 4): its file names the mode and
    the device and has every ratio row, each a finite positive value (the
    TFMOT rows where TFMOT is installed)."""
    import importlib.util
    import math

    from benchmarks import device

    path = tmp_path / "RESULTS_DEVICE.md"
    text = device.main(["--quick", "--output", str(path)])
    assert path.read_text() == text
    lines = text.splitlines()
    assert "Mode: quick" in text
    assert [line for line in lines if line.startswith("Device: ")][0].split(": ")[1] in (
        "GPU", "CPU")
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 7:
            rows[cells[0], cells[2]] = cells[3]
    jits = ("jit=False", "jit=True")
    expected = [(label, jit) for label in ("masked / plain", "measured / unmeasured",
                                           "mixed_float16 / float32") for jit in jits]
    expected += [("packed / unpacked", "K=2"), ("packed / unpacked", "K=4")]
    tfmot = [("keras-egf / TFMOT", f"{jit} (keras-egf)") for jit in jits]
    if importlib.util.find_spec("tensorflow_model_optimization"):
        expected += tfmot
    else:
        assert all(rows[key] == "–" for key in tfmot)
    for key in expected:
        value = float(rows[key])
        assert math.isfinite(value) and value > 0, (key, value)


def test_architecture_benchmark_times_both_variants_of_each_architecture():
    """`python -m benchmarks.architectures` in miniature: the CNN and the
    WRN-16-4 builders with tiny widths, one round each jit mode; each row
    is a finite positive ratio of the measured to the unmeasured epoch, and
    the measured model really measured (its logs carry gf/EGF)."""
    import math

    from benchmarks import architectures

    sizes = {"cnn": (4, 4, 4, 4, 8), "wrn-16-4": (4, 4, 4, 4)}
    modes = {"cnn": (False, True), "wrn-16-4": (False,)}  # XLA: once is enough
    all_times = {a: architectures.measure(a, rounds=1, jit_modes=modes[a],
                                          steps=2, batch=4, size=sizes[a])
                 for a in architectures.ARCHITECTURES}
    rows = architectures.rows(all_times)[2:]
    assert len(rows) == 3
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] in sizes and cells[1] in ("False", "True")
        assert math.isfinite(float(cells[2])) and float(cells[2]) > 0
    import keras_egf as ke
    model = architectures.build(ke, "cnn", True, sizes["cnn"])
    assert model.gradient_flow_every == 1 and model.track_gradient_flow


def test_measure_profile_times_every_part_against_the_untracked_step():
    """`python -m benchmarks.measure_profile` in miniature (a tiny MLP, one
    round): every variant is timed, and the report has one row each; the
    patched measure is restored afterwards (a model built later measures
    the real four norms)."""
    import numpy as np

    import keras
    import keras_egf as ke
    from benchmarks import measure_profile

    times, steps = measure_profile.measure(rounds=1, samples=64, batch=16,
                                           shape=(8, 6, 3))
    assert set(times) == {"untracked", *measure_profile.VARIANTS}
    assert all(len(t) == 1 and t[0] > 0 for t in times.values())
    text = measure_profile.report(times, steps, False)
    assert all(f"| {v} |" in text for v in measure_profile.VARIANTS)
    model = ke.build_mlp((8,), [6], 3, seed=0)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logs = model.train_on_batch(np.ones((4, 8), "float32"), np.zeros(4, "int64"),
                                return_dict=True)
    assert logs["gf_1"] > 0 and logs["gf_1"] != 1.0 and logs["gf_1"] != 2.0


def test_packed_step_benchmark_compares_the_measuring_and_the_plain_trainer():
    """`python -m benchmarks.packed_step` in miniature (one point, width 4,
    two steps, one round): both trainers are timed, the ratio row is a
    finite positive number, and only the plain trainer's measures are
    zeros."""
    import math

    import tensorflow as tf

    from benchmarks import packed_step

    times, members = packed_step.measure(points=1, width=4, rounds=1, steps=2)
    assert members == 2 and all(len(t) == 1 for t in times.values())
    row = packed_step.report(times, members, 1, 4, 1, 2).splitlines()[-1]
    assert math.isfinite(float(row.split("|")[3]))
    grads = [tf.ones((2, 3, 4))]
    plain = packed_step.trainer(1, 4, measured=False)._measures(grads)
    assert all(float(tf.reduce_sum(v)) == 0 for v in plain.values())
    measured = packed_step.trainer(1, 4, measured=True)
    assert float(measured._measures(
        [tf.ones(l.kernel.shape) for l in measured.dense_layers])["gf_1"][0]) > 0


def test_backend_benchmark_interleaves_one_worker_per_backend_and_jit_mode():
    """`python -m benchmarks.backends --quick`: four worker processes (TF
    and JAX, with and without XLA), each answering on its own backend with
    an epoch that logged gf/EGF (the worker checks both); the report has a
    finite JAX/TF ratio for each jit mode, and quick mode writes nothing."""
    import math
    import os

    from benchmarks import backends

    before = os.path.getmtime(backends.RESULTS) if os.path.exists(backends.RESULTS) else None
    text = backends.main(["--quick", "--rounds", "1"])
    rows = [line for line in text.splitlines() if line.startswith("| jax / tensorflow")]
    assert [r.split("|")[2].strip() for r in rows] == ["False", "True"]
    assert all(math.isfinite(float(r.split("|")[3])) for r in rows)
    assert "Mode: quick" in text
    after = os.path.getmtime(backends.RESULTS) if os.path.exists(backends.RESULTS) else None
    assert before == after
    summary = backends.summary(text)  # RESULTS.md's section: ratios only
    assert "| jax / tensorflow | True |" in summary and "| backend |" not in summary
    assert "|---|---|---|---|---|\n" not in summary.replace("|---|---|---|---|---|---|---|", "")
