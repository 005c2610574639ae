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
