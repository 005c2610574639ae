"""Independent recomputation of gf/EGF for tests: a plain-Dense twin holding
the masked model's effective weights (kernel * mask), one GradientTape on an
explicitly written objective, NumPy norms. Shares no code with the measures
under test (keras_egf.gradient_flow, MaskedModel.train_step, the callback)."""

import keras
import numpy as np
import tensorflow as tf

import keras_egf as ke


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
        with tf.GradientTape() as tape:
            out = twin(x, training=True)
            if probabilities:
                out = tf.nn.softmax(out)
            loss = loss_fn(y, out)
        for i, g in enumerate(tape.gradient(loss, kernels)):
            acc[i] += g.numpy().astype(np.float64) * len(y) / total
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
