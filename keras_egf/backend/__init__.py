"""What differs between Keras backends, one module per backend.

`keras_egf.backend.tensorflow`, `keras_egf.backend.jax` and (experimental)
`keras_egf.backend.torch` each hold `MaskedModel`'s training step and the
helpers that need the backend's own autodiff; everything else in keras-egf
is written in `keras.ops`. `get()`
returns the module of the backend Keras runs on (`keras.backend.backend()`,
fixed per process by KERAS_BACKEND).
"""

import importlib

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")


def name():
    """The Keras backend in use ("tensorflow", "jax", ...)."""
    return keras.backend.backend()


def get():
    """The keras-egf module of the Keras backend in use; a
    NotImplementedError naming it for the others."""
    backend = name()
    if backend not in SUPPORTED_BACKENDS:
        raise NotImplementedError(
            f"keras-egf's training step and gradient helpers run on the "
            f"Keras backends {SUPPORTED_BACKENDS}, not on {backend!r} "
            f"(docs/backends.md has the plan). Received: "
            f"keras.backend.backend()={backend!r}; set KERAS_BACKEND to "
            "tensorflow, jax or torch.")
    return importlib.import_module(f"keras_egf.backend.{backend}")


_LIBRARIES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch",
              "numpy": "numpy", "openvino": "openvino"}


def version():
    """The version of the backend's own library (TensorFlow's, JAX's, ...)."""
    library = importlib.import_module(_LIBRARIES.get(name(), name()))
    return getattr(library, "__version__", "unknown")


def description():
    """{"keras_backend": name, "keras_backend_version": version}, what
    results.json's `versions` and TensorBoard record."""
    return {"keras_backend": name(), "keras_backend_version": version()}
