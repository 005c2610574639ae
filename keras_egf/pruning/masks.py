"""From scores to masks: exact top-k per layer or over all layers.

Every pruning method produces scores ({layer name: array of the kernel's
shape}, higher = keep); this module turns them into 0/1 masks with exactly
the requested number of kept weights, once, for every method (JaxPruner's
`base_updater` idea). Ties are broken by position, so equal scores give the
same masks every time.
"""

import numpy as np

from keras_egf import layers as layers_lib
from keras_egf.pruning import distributions


def masked_layers(model):
    """The model's layers that own a mask, in order."""
    return [l for l in layers_lib.prunable_layers(model)
            if layers_lib.is_masked_layer(l)]


def kept_count(size, sparsity):
    """Number of weights kept in a layer of `size` at `sparsity` (>= 1)."""
    sparsity = distributions.check_sparsity(sparsity)
    return max(1, int(round((1.0 - sparsity) * size)))


def check_exclude(model, exclude):
    """Normalises `exclude` (a name or names) to a tuple of masked layers."""
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


def kernel_shapes(model):
    """{layer name: kernel shape} of the model's masked layers (ValueError
    naming the problem when there are none)."""
    shapes = {l.name: tuple(l.kernel.shape) for l in masked_layers(model)}
    if not shapes:
        plain = [l.name for l in layers_lib.prunable_layers(model)]
        hint = (f" Its layers {plain} are plain Dense/Conv2D: build the model "
                "with keras_egf.MaskedDense / MaskedConv2D (e.g. build_mlp("
                "masked=True))." if plain else "")
        raise ValueError(f"Model {model.name!r} has no masked layers.{hint}")
    return shapes


def layer_sparsities(model, sparsity, distribution="uniform", exclude=()):
    """{layer name: sparsity} for the model's masked layers."""
    shapes = kernel_shapes(model)
    fn = distributions.get_distribution(distribution)
    return fn(shapes, sparsity, exclude=check_exclude(model, exclude))


def layer_counts(model, sparsity, distribution="uniform", exclude=()):
    """{layer name: exact number of weights to keep} per masked layer."""
    shapes = kernel_shapes(model)
    per_layer = layer_sparsities(model, sparsity, distribution, exclude)
    return {n: kept_count(int(np.prod(s)), per_layer[n]) for n, s in shapes.items()}


def top_k_mask(scores, count):
    """0/1 float32 mask keeping the `count` highest scores (ties: first)."""
    scores = np.asarray(scores)
    if scores.dtype not in (np.float32, np.float64):  # float32 -> float64 is
        scores = scores.astype(np.float64)             # exact: same selection
    if not 0 <= count <= scores.size:
        raise ValueError(f"count must be in [0, {scores.size}] for shape "
                         f"{scores.shape}. Received: count={count}")
    flat = np.zeros(scores.size, dtype=np.float32)
    if count == 0:
        return flat.reshape(scores.shape)
    negated = -scores.ravel()
    # O(n): the count-th best value, everything better, then the ties at
    # that value by position (what a stable sort would keep).
    threshold = np.partition(negated, count - 1)[count - 1]
    better = negated < threshold
    ties = np.flatnonzero(negated == threshold)
    flat[better] = 1.0
    flat[ties[:count - int(better.sum())]] = 1.0
    return flat.reshape(scores.shape)


def among_kept(scores, masks):
    """Scores with every already pruned position (mask 0) at -inf, so a
    top-k never regrows a weight: masks only get sparser."""
    return {n: np.where(masks[n] > 0, s, -np.inf) for n, s in scores.items()}


def masks_from_scores(scores, counts=None, total=None, min_per_layer=1):
    """Masks from scores: per layer (`counts` {name: kept}) or global.

    Global (`total` kept over all layers in `scores`): one ranking of all
    scores together; `min_per_layer` weights of each layer are kept first (by
    its own ranking) so that no layer is emptied (0 allows it, as plain
    global magnitude/SNIP do).
    """
    if (counts is None) == (total is None):
        raise ValueError("Pass exactly one of counts (per layer) or total (global).")
    if counts is not None:
        return {n: top_k_mask(s, counts[n]) for n, s in scores.items()}
    names = list(scores)
    sizes = [np.asarray(scores[n]).size for n in names]
    if not 0 <= total <= sum(sizes):
        raise ValueError(f"total must be in [0, {sum(sizes)}]. Received: total={total}")
    flat = np.concatenate([np.asarray(scores[n], np.float64).ravel() for n in names])
    keep = np.zeros(flat.size, dtype=bool)
    offsets = np.cumsum([0] + sizes)
    for i in range(len(names)):  # the floor per layer
        if min_per_layer:
            part = flat[offsets[i]:offsets[i + 1]]
            order = np.argsort(-part, kind="stable")[:min_per_layer]
            keep[offsets[i] + order] = True
    rest = int(total - keep.sum())
    if rest > 0:
        order = np.argsort(-np.where(keep, -np.inf, flat), kind="stable")
        keep[order[:rest]] = True
    return {n: keep[offsets[i]:offsets[i + 1]].reshape(np.shape(scores[n]))
            .astype(np.float32) for i, n in enumerate(names)}


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
