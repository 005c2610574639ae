"""Pruning masks: exact-count random masks, magnitude masks, applying masks.

Pruning methods live in a registry (`all_pruning_method_names`,
`register_pruning_method`, `get_pruning_method`); each takes a model, a target
sparsity, a distribution name, a seed and layers to exclude, and returns
{layer name: 0/1 numpy mask} for the model's masked layers.
"""

import numpy as np

from keras_egf import layers as layers_lib
from keras_egf import sparsity_distributions


def kept_count(size, sparsity):
    """Number of weights kept in a layer of `size` at `sparsity` (>= 1)."""
    sparsity = sparsity_distributions.check_sparsity(sparsity)
    return max(1, int(round((1.0 - sparsity) * size)))


def random_mask_with_count(shape, count, rng):
    """A 0/1 float32 mask of `shape` with exactly `count` ones, at random."""
    size = int(np.prod(shape))
    if not 0 <= count <= size:
        raise ValueError(
            f"count must be in [0, {size}] for shape {tuple(shape)}. "
            f"Received: count={count}"
        )
    flat = np.zeros(size, dtype=np.float32)
    flat[rng.choice(size, size=count, replace=False)] = 1.0
    return flat.reshape(shape)


def magnitude_mask_with_count(kernel, count):
    """Keeps the `count` entries of largest |kernel| (ties by position)."""
    kernel = np.asarray(kernel)
    flat = np.zeros(kernel.size, dtype=np.float32)
    order = np.argsort(-np.abs(kernel).ravel(), kind="stable")
    flat[order[:count]] = 1.0
    return flat.reshape(kernel.shape)


def masked_layers(model):
    """The model's layers that own a mask, in order."""
    return [l for l in layers_lib.prunable_layers(model)
            if layers_lib.is_masked_layer(l)]


def _check_exclude(model, exclude):
    """Normalises `exclude` to a tuple of masked-layer names."""
    if exclude is None:
        return ()
    if isinstance(exclude, str):
        exclude = (exclude,)
    exclude = tuple(exclude)
    names = [l.name for l in masked_layers(model)]
    unknown = [e for e in exclude if e not in names]
    if unknown:
        raise ValueError(
            f"exclude names layers that are not masked layers of model "
            f"{model.name!r}: {unknown}; masked layers: {names}")
    return exclude


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool)
                             or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(
            f"seed must be None or an integer >= 0. Received: seed={seed!r}")
    return seed


def layer_sparsities(model, sparsity, distribution="uniform", exclude=()):
    """{layer name: sparsity} for the model's masked layers."""
    shapes = {l.name: tuple(l.kernel.shape) for l in masked_layers(model)}
    if not shapes:
        plain = [l.name for l in layers_lib.prunable_layers(model)]
        hint = (f" Its layers {plain} are plain Dense/Conv2D: build the model "
                "with keras_egf.MaskedDense / MaskedConv2D (e.g. build_mlp("
                "masked=True))." if plain else "")
        raise ValueError(f"Model {model.name!r} has no masked layers.{hint}")
    fn = sparsity_distributions.get_distribution(distribution)
    return fn(shapes, sparsity, exclude=_check_exclude(model, exclude))


def random_masks(model, sparsity, distribution="uniform", seed=None,
                 exclude=()):
    """Random masks with an exact number of kept weights per layer.

    The same seed gives the same masks. Excluded layers get all-ones masks.
    """
    rng = np.random.default_rng(_check_seed(seed))
    per_layer = layer_sparsities(model, sparsity, distribution, exclude)
    masks = {}
    for layer in masked_layers(model):
        shape = tuple(layer.kernel.shape)
        count = kept_count(int(np.prod(shape)), per_layer[layer.name])
        masks[layer.name] = random_mask_with_count(shape, count, rng)
    return masks


def magnitude_masks(model, sparsity, distribution="uniform", seed=None,
                    exclude=()):
    """One-shot magnitude pruning: keep the largest |kernel| entries."""
    del seed  # deterministic
    per_layer = layer_sparsities(model, sparsity, distribution, exclude)
    masks = {}
    for layer in masked_layers(model):
        kernel = np.asarray(layer.kernel.numpy())
        count = kept_count(kernel.size, per_layer[layer.name])
        masks[layer.name] = magnitude_mask_with_count(kernel, count)
    return masks


def apply_masks(model, masks):
    """Sets each named layer's mask (and zeroes its pruned kernel entries)."""
    by_name = {l.name: l for l in masked_layers(model)}
    unknown = sorted(set(masks) - set(by_name))
    if unknown:
        raise ValueError(
            f"Masks name layers {unknown} that are not masked layers of "
            f"model {model.name!r}; masked layers: {sorted(by_name)}"
        )
    for name, mask in masks.items():
        by_name[name].set_mask(mask)
    return model


def get_masks(model):
    """{layer name: mask as numpy} for the model's masked layers."""
    return {l.name: np.asarray(l.mask.numpy()) for l in masked_layers(model)}


_PRUNING_METHODS = {"random": random_masks, "magnitude": magnitude_masks}


def all_pruning_method_names():
    """Names of the registered pruning methods."""
    return sorted(_PRUNING_METHODS)


def register_pruning_method(name, fn):
    """Registers fn(model, sparsity, distribution, seed, exclude) -> masks."""
    _PRUNING_METHODS[name] = fn


def get_pruning_method(name):
    """Returns the pruning method registered as `name`."""
    if name not in _PRUNING_METHODS:
        raise ValueError(
            f"Unknown pruning method {name!r}. Supported: "
            f"{all_pruning_method_names()}"
        )
    return _PRUNING_METHODS[name]


def prune(model, sparsity, method="random", distribution="uniform", seed=None,
          exclude=()):
    """Computes masks with `method` and applies them; returns the masks.

    `exclude`: a layer name or a list of names left dense (all-ones masks).
    """
    _check_seed(seed)
    masks = get_pruning_method(method)(
        model, sparsity, distribution=distribution, seed=seed, exclude=exclude
    )
    apply_masks(model, masks)
    return masks
