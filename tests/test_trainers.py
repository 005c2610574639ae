"""The binaries' shared start-up (trainers/__init__.py): --help of the
console scripts."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What pip's console-script stub for `keras-egf-NAME = trainers.NAME:run`
# runs: a `__main__` with no docstring and no flags of its own.
_CONSOLE_SCRIPT = """
import sys
from trainers.{module} import run
sys.argv[0] = "keras-egf-{module}"
sys.exit(run())
"""

# Flags of libraries that the binaries import but do not read.
FOREIGN = ("absltest", "absl.testing", "--test_srcdir", "tensorflow.python",
           "--hbm_oom_exit", "--tt_check_filter", "--pdb_post_mortem",
           "--logtostderr")


def _console_script(module, *args):
    return subprocess.run(
        [sys.executable, "-c", _CONSOLE_SCRIPT.format(module=module), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.parametrize("module, flag, own", [
    ("train", "--help", ("--dataset", "--regularizers", "--egf_points",
                         "--output_dir", "--overwrite", "--verbose")),
    ("sweep", "--helpshort", ("--grid", "--seeds", "--pack", "--output_dir")),
    ("report", "-?", ("--sweep_dir", "--min_pairs", "--diverged")),
    ("data", "--help", ("--data_dir",)),
])
def test_console_script_help_lists_the_tools_own_flags(module, flag, own):
    proc = _console_script(module, flag)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    out = proc.stdout
    assert f"keras-egf-{module}" in out  # the docstring's usage line
    for name in own:  # "  --name:" or, a boolean, "  --[no]name:"
        assert re.search(rf"^  --(\[no\])?{name[2:]}:", out, re.M), (name, out)
    for name in FOREIGN:
        assert name not in out, (name, out)
    assert "Try --helpfull" not in out and "USAGE" not in out


def test_console_script_helpfull_puts_the_tools_flags_first():
    proc = _console_script("train", "--helpfull")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for name in FOREIGN[:6]:  # absl's own (--pdb_post_mortem ...) stay listed
        assert name not in out, (name, out)
    assert out.index("  --dataset:") < out.index("absl.app:")
    assert "  --flagfile:" in out and "  -v,--verbosity:" in out
