"""Speed benchmarks of keras-egf (run with `python -m benchmarks`)."""
