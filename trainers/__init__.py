"""absl-flag binaries of keras-egf."""
