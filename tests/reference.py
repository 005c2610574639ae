"""Independent recomputation of gf/EGF for tests: a plain-Dense twin holding
the masked model's effective weights (kernel * mask), the backend's own
autodiff (a GradientTape, or jax.grad) on an explicitly written objective,
NumPy norms. Shares no code with the measures under test
(keras_egf.gradient_flow, MaskedModel.train_step, the callback).

The core test files run on TensorFlow and on JAX (tests/conftest.py):
`gradients` and `to_numpy` are written for both, and `tensorflow_only`
marks a test that means something on TensorFlow alone."""

import keras
import numpy as np
import pytest

import keras_egf as ke

BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="TensorFlow-specific (tf.function, "
    "tf.GradientTape custom loops, tf.distribute)")


def to_numpy(t):
    """A tensor, array or variable of any backend as a NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(t))


def _stateless(fn, variables):
    """fn as a function of the variables' values (a keras.StatelessScope)."""
    def value(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn()
    return value


def _torch_leaves(variables):
    """Copies of the variables' values that torch.autograd differentiates."""
    return [v.value.detach().clone().requires_grad_(True) for v in variables]


def gradients(fn, variables):
    """d fn() / d variables (NumPy arrays) by the backend's own autodiff: a
    tf.GradientTape, or jax.grad / torch.autograd of fn with the variables'
    values mapped in a keras.StatelessScope."""
    if BACKEND == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(_stateless(fn, variables))(
            [v.value for v in variables])]
    if BACKEND == "torch":
        import torch

        values = _torch_leaves(variables)
        loss = _stateless(fn, variables)(values)
        return [g.detach().cpu().numpy() for g in torch.autograd.grad(loss, values)]
    import tensorflow as tf
    with tf.GradientTape() as tape:
        loss = fn()
    # An Embedding's gradient is a tf.IndexedSlices: densified.
    return [tf.convert_to_tensor(g).numpy()
            for g in tape.gradient(loss, variables)]


def effective_twin(model, builder=None, **build_kwargs):
    """A plain-layer twin (Dense, Conv2D) holding `model`'s effective weights.

    `builder` (default `build_mlp`) and `build_kwargs` build `model` (without
    masked, weight_decay: the twin has no regulariser; the test adds L2 by
    hand).
    """
    twin = (builder or ke.build_mlp)(masked=False, **build_kwargs)
    for layer in model.layers:
        if not layer.weights:
            continue
        target = twin.get_layer(layer.name)
        if ke.layers.is_masked_layer(layer):
            weights = [layer.kernel.numpy() * layer.mask.numpy()]
            if layer.use_bias:
                weights.append(layer.bias.numpy())
            target.set_weights(weights)
        else:
            target.set_weights(layer.get_weights())
    return twin


def numpy_measures(grads, masks):
    """gf_1, gf_2, egf_1, egf_2 (float64) from per-layer gradients."""
    grads = [np.asarray(g, np.float64) for g in grads]
    flat = np.concatenate([g.ravel() for g in grads])
    masked = [g if m is None else g * m for g, m in zip(grads, masks)]
    return {
        "gf_1": np.abs(flat).sum(),
        "gf_2": np.sqrt((flat ** 2).sum()),
        "egf_1": np.mean([np.abs(g).sum() for g in masked]),
        "egf_2": np.mean([np.sqrt((g ** 2).sum()) for g in masked]),
    }


def twin_kernel_gradients(twin, batches, l2=0.0, probabilities=False):
    """Gradient of the mean objective over `batches` w.r.t. twin kernels.

    Objective: sparse categorical cross-entropy (on logits, or on
    probabilities when `probabilities`), BatchNorm in training mode, plus
    l2 * sum(W**2) per kernel, its gradient 2 * l2 * W added by hand.
    """
    layers = ke.prunable_layers(twin)
    kernels = [l.kernel for l in layers]
    total = sum(len(y) for _, y in batches)
    acc = [np.zeros(k.shape) for k in kernels]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(
        from_logits=not probabilities)
    for x, y in batches:
        def loss(x=x, y=y):
            out = twin(x, training=True)
            if probabilities:
                out = keras.ops.softmax(out)
            return loss_fn(y, out)
        for i, g in enumerate(gradients(loss, kernels)):
            acc[i] += g.astype(np.float64) * len(y) / total
    return [g + 2.0 * l2 * k.numpy().astype(np.float64)
            for g, k in zip(acc, kernels)]


def reference_measures(model, batches, l2=0.0, probabilities=False,
                       builder=None, **build_kwargs):
    """gf/EGF of `model`'s objective on `batches`, recomputed on a twin."""
    twin = effective_twin(model, builder, **build_kwargs)
    grads = twin_kernel_gradients(twin, batches, l2, probabilities)
    masks = [l.mask.numpy() if ke.layers.is_masked_layer(l) else None
             for l in ke.prunable_layers(model)]
    return numpy_measures(grads, masks)


def hessian_vector_product(fn, variables, vectors):
    """H v (NumPy arrays) for the Hessian H of fn() with respect to
    `variables` and one vector per variable, by double backpropagation
    (nested tf.GradientTapes, jax.grad of a gradient's dot product, or
    torch.autograd with create_graph)."""
    if BACKEND == "jax":
        import jax

        grad = jax.grad(_stateless(fn, variables))

        def dot(values):
            return sum(keras.ops.sum(g * v) for g, v in zip(grad(values), vectors))
        return [np.asarray(h) for h in
                jax.grad(dot)([v.value for v in variables])]
    if BACKEND == "torch":
        import torch

        values = _torch_leaves(variables)
        loss = _stateless(fn, variables)(values)
        grads = torch.autograd.grad(loss, values, create_graph=True)
        z = sum(torch.sum(g * torch.as_tensor(v)) for g, v in zip(grads, vectors))
        return [h.detach().cpu().numpy() for h in torch.autograd.grad(z, values)]
    import tensorflow as tf
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = fn()
        z = sum(tf.reduce_sum(g * v) for g, v in
                zip(inner.gradient(loss, variables), vectors))
    return [h.numpy() for h in outer.gradient(z, variables)]


def custom_loop_step(model):
    """One step of a user's own loop around `model.train_step`, as a
    function of (x, y) returning the logs: a tf.function of it on
    TensorFlow; on JAX, Keras's stateless step (jitted) on the model's
    state, the new state written back to the variables."""
    if BACKEND == "jax":
        import jax

        step = jax.jit(model.train_step)
        model.optimizer.build(model.trainable_variables)

        def run(x, y):
            groups = (model.trainable_variables, model.non_trainable_variables,
                      model.optimizer.variables, model.metrics_variables)
            state = tuple([v.value for v in g] for g in groups)
            logs, state = step(state, (x, y))
            for variables, values in zip(groups, state):
                for v, value in zip(variables, values):
                    v.assign(value)
            return logs
        return run
    if BACKEND == "torch":
        return lambda x, y: model.train_step(
            (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)))
    import tensorflow as tf
    step = tf.function(model.train_step)
    return lambda x, y: step((tf.constant(x), tf.constant(y)))
