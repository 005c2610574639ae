"""`GradientRecorder`: one training step's effective-kernel gradients, on request.

RigL grows connections where |g| is largest, g = dC/d(kernel * mask) the
effective-kernel gradient of the update step. `MaskedModel`'s training
step already has g (it masks it for the optimizer), so recording it costs
no extra backward pass:

    recorder = GradientRecorder()
    model.record_kernel_gradients(recorder)   # the one entry point
    recorder.request()                        # the next training call records
    model.train_on_batch(x, y)                # (or a step inside fit)
    recorder.gradients()                      # {masked layer name: g}

`keras_egf.pruning.dynamic.RigL` owns one and does exactly this around its
update steps.

A recorder holds one non-trainable `keras.Variable` per masked layer, the
kernel's shape and dtype. They belong to the recorder, not to the model:
the model keeps the recorder as a plain attribute, which neither Keras's
tracker nor TensorFlow's tracks, so the buffers are not model weights (not
in `model.weights`, not saved in a `.keras` or `.h5` file, not trained).
The training step writes them inside the compiled step on TensorFlow; on
JAX the (stateless) step returns the gradients and `write` stores them
after it.
"""

import keras
from keras import ops

from keras_egf import layers as layers_lib


class GradientRecorder:
    """Stores a `MaskedModel`'s effective-kernel gradients g_l of a requested
    training step: every masked layer's, pruned positions included,
    unscaled (divided by the loss scale under mixed precision), taken
    before that step's optimizer update."""

    def __init__(self):
        self._names = {}  # id(kernel variable) -> masked layer name
        self._buffers = {}  # masked layer name -> keras.Variable
        self._requested = False
        self.built = False

    def build(self, model):
        """Makes one buffer per masked layer of `model` (called by
        `MaskedModel.record_kernel_gradients`)."""
        layers = [l for l in layers_lib.prunable_layers(model)
                  if layers_lib.is_masked_layer(l)]
        self._names = {id(l.kernel): l.name for l in layers}
        self._buffers = {
            l.name: keras.Variable(
                ops.zeros(l.kernel.shape, l.kernel.dtype), trainable=False,
                autocast=False, name=l.name.replace("/", "_") + "_kernel_grad")
            for l in layers}
        self._requested = False
        self.built = True

    def request(self):
        """The next training call (a step of `fit`, `train_on_batch`) records."""
        if not self.built:
            raise ValueError("GradientRecorder: hand it to the model with "
                             "model.record_kernel_gradients(recorder) before "
                             "requesting gradients.")
        self._requested = True

    def take_request(self):
        """Whether a recording was requested; clears the request (the model's
        train function asks once per call)."""
        requested, self._requested = self._requested, False
        return requested

    def cancel(self):
        """Drops a pending request (a new run starts with none)."""
        self._requested = False

    def recorded(self, kernels, grads, scale=None):
        """{masked layer name: g / scale} for the recorded layers among
        `kernels` (the step's kernel variables, `grads` their gradients):
        what a recording step writes."""
        out = {}
        for kernel, g in zip(kernels, grads):
            name = self._names.get(id(kernel))
            if name is not None:
                out[name] = g if scale is None else g / ops.cast(scale, g.dtype)
        return out

    def write(self, recorded):
        """Stores `recorded` ({layer name: g}) in the buffers."""
        for name, g in recorded.items():
            self._buffers[name].assign(g)

    def gradient(self, name):
        """g of masked layer `name` from the last recording step (a fresh
        NumPy array)."""
        return keras.ops.convert_to_numpy(self._buffers[name])

    def gradients(self):
        """{masked layer name: g (NumPy)} of the last recording step."""
        return {name: self.gradient(name) for name in self._buffers}
