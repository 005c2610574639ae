"""Where a module's tests are.

The rule: keras_egf/X.py is tested in tests/test_X.py (keras_egf/_warnings.py
in test_warnings.py). A subpackage P is tested in tests/test_P.py: its own
names (P/__init__.py) and what the package does as a whole; a module
P/M.py whose tests stand on their own has tests/test_P_M.py. So a change to
keras_egf/P/M.py finds its tests in test_P_M.py, then in test_P.py. A test
goes to the file of the module whose code it checks, whichever public name
it calls that code by.

Subpackages:
- architectures/: test_architectures.py (mlp, cnn, wrn, common as a whole).
- backend/: test_backends.py (every measure on TensorFlow and on JAX).
- files/: test_files.py (atomic, staging, output_dirs, lock, leftovers as a
  whole); leftovers also in test_sweep_recovery.py.
- packing/: test_packing.py (run, trainer, outputs, grouping: packed
  training as a whole), test_packing_layers.py, test_packing_members.py.
- pruning/: test_pruning.py (__init__.py: prune, compute_masks, the method
  registry; collapse.py), test_pruning_masks.py, test_pruning_distributions.py,
  test_pruning_scores.py, test_pruning_dynamic.py, test_pruning_mask_updates.py;
  conversion.py in test_tfmot_prune.py, test_tfmot_wrapper.py and
  test_layer_coverage.py; gradual.py in test_tfmot_callbacks.py,
  test_tfmot_impl.py and test_callbacks.py (callbacks that start each fit
  afresh); schedules.py in test_tfmot_schedules.py; structured.py in
  test_tfmot_m_by_n.py.
- report/: test_report.py.
- sweep/: test_sweep.py (end to end, through the sweep binary) and
  test_sweep_recovery.py.

Modules without a test_X.py of their own, and where they are tested:
- distributed.py: test_sweep_recovery.py (a lost worker, a second chief, a
  missing or lost chief) and test_sweep.py (a chief and two workers).
- interop.py: test_tfmot_parity.py (from_tfmot) and test_docs.py.
- masking.py: test_layer_coverage.py and the test_tfmot_*.py ports.
- prunable.py: test_tfmot_registry.py.
- pruning_options.py: test_tfmot_wrapper.py, test_tfmot_prune.py and
  test_layers.py (int8 masks).
- settings.py: test_config.py (each rule declared beside its setting).
- statistics.py: test_report.py, through the report's names.

Integration files, named by what they run rather than by a module:
test_train.py (trainers/train.py and run_comparison end to end),
test_trainers.py (the binaries' --help), test_sweep_recovery.py (sweeps
that survive lost workers, damaged state and Ctrl-C: sweep/, distributed.py,
files/, interrupts.py), test_docs.py (the python blocks of README.md and
docs/), test_messages.py (errors name the argument and the value),
test_layer_coverage.py (every prunable layer type), test_backends.py,
test_measures_on_grid_settings.py (gf/EGF on every grid setting) and the
test_tfmot_*.py ports, which keep the names of the TFMOT test files they
port (docs/tfmot_ported_tests_*.md). test_benchmarks.py and
test_tutorial.py test benchmarks/.

Helpers, not tests: reference.py (independent recomputations on a
plain-layer twin), layer_testing.py (`run_layer_test`), sweep_fakes.py
(trials that write a valid results.json without training),
tfmot_test_utils.py (TFMOT's test helpers, ported).
"""

import os
import socket

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# The core test files run on each backend: `KERAS_BACKEND=jax pytest tests`
# collects only these (the other files test parts that stay on TensorFlow:
# tf.data pipelines, the binaries, sweeps, packing, TFMOT interop, or
# backend-free code). Their references (tests/reference.py) use the
# backend's own autodiff. CI runs JAX_CI_FILES on JAX from
# test_backends.py (docs/backends.md §2 says why those).
JAX_TEST_FILES = (
    "test_gradient_flow.py", "test_layers.py", "test_model.py",
    "test_measures_on_grid_settings.py", "test_gradient_recorder.py",
    "test_callbacks.py", "test_pruning.py", "test_pruning_scores.py",
    "test_pruning_dynamic.py", "test_layer_coverage.py")
JAX_CI_FILES = (
    "test_gradient_flow.py", "test_model.py",
    "test_measures_on_grid_settings.py", "test_gradient_recorder.py",
    "test_pruning_scores.py")


def pytest_ignore_collect(collection_path, config):
    """Under another Keras backend than TensorFlow, only JAX_TEST_FILES."""
    name = collection_path.name
    if (os.environ["KERAS_BACKEND"] != "tensorflow" and name.startswith("test_")
            and name.endswith(".py") and name not in JAX_TEST_FILES):
        return True
    return None


@pytest.fixture
def free_port():
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
