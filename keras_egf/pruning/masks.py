"""From scores to masks: exact top-k per layer or over all layers.

Every pruning method produces scores ({layer name: array of the kernel's
shape}, higher = keep); this module turns them into 0/1 masks with exactly
the requested number of kept weights, once, for every method (JaxPruner's
`base_updater` idea). Ties are broken by position, so equal scores give the
same masks every time.
"""

import numpy as np

from keras_egf import layers as layers_lib
from keras_egf import validation
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
        hint = (f" Its prunable weights {plain} are unmasked: convert it with "
                "keras_egf.prune_low_magnitude(model) (keras_egf.prune does "
                "it for you), or build it with masked layers (e.g. build_mlp("
                "masked=True))." if plain else
                " It has no layers with prunable weights (Dense, convolutions, "
                "Embedding, RNNs, attention; see keras_egf.prunable).")
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
    return top_k_selection(scores, count).astype(np.float32).reshape(scores.shape)


def top_k_indices(scores, count):
    """Flat positions (ascending) of the `count` highest scores (ties:
    first)."""
    return np.flatnonzero(top_k_selection(scores, count))


def top_k_selection(scores, count):
    """Flat bool array of the `count` highest scores (ties: the first
    positions, what a stable sort would keep; NaN ranks lowest), in O(size).

    NumPy's partition slows down about tenfold on arrays dominated by one
    value, which pruning scores often are (-inf at excluded positions, exact
    zeros of dead units' gradients), so a value holding a quarter or more of
    an evenly spaced sample is settled first (everything above it, it, or
    below it) and only the rest is partitioned.
    """
    values = np.asarray(scores).ravel()
    if values.dtype not in (np.float32, np.float64):  # float32 -> float64 is
        values = values.astype(np.float64)             # exact: same selection
    if not 0 <= count <= values.size:
        validation.fail("count", f"in [0, {values.size}] (scores of shape "
                        f"{np.shape(scores)})", count)
    if values.size and np.isnan(values.max()):  # max propagates NaN
        values = np.where(np.isnan(values), -np.inf, values)
    selected = np.zeros(values.size, bool)
    positions = None  # of `values` in the input (None: all of them)

    def take(chosen):  # a bool array over `values`
        if positions is None:
            selected[chosen] = True
        else:
            selected[positions[chosen]] = True

    while 0 < count < values.size:
        # The most frequent value of an evenly spaced sample of ~1,000.
        sample = values[::max(1, values.size // 1024)]
        unique, frequency = np.unique(sample, return_counts=True)
        if 4 * frequency.max() < sample.size:
            break  # no value dominates: partition what is left
        dominant = unique[frequency.argmax()]
        rest = values > dominant
        above = int(np.count_nonzero(rest))
        if above < count:
            take(rest)
            count -= above
            at_dominant = np.flatnonzero(values == dominant)
            take(at_dominant[:count])  # all of it, or the first of the tie
            count -= min(count, at_dominant.size)
            if count == 0:
                break
            rest = values < dominant
        kept = np.flatnonzero(rest)
        values = values[kept]
        positions = kept if positions is None else positions[kept]
    if count == values.size:
        take(slice(None))
    elif count > 0:
        threshold = np.partition(values, values.size - count)[values.size - count]
        better = values > threshold
        ties = np.flatnonzero(values == threshold)[:count - int(np.count_nonzero(better))]
        take(better)
        take(ties)
    return selected


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
    validation.integer("total", total, 0, sum(sizes))
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
