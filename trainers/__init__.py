"""absl-flag binaries: keras-egf-train, keras-egf-sweep, keras-egf-report."""

import os

# TensorFlow's C++ INFO/WARNING lines (oneDNN, CUDA probing) bury the
# binaries' own output; errors still show. Set the variable to override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
