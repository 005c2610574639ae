"""Pruning from scratch: methods as scores, one registry, exact masks.

    masks = keras_egf.pruning.prune(model, 0.9, method="snip",
                                    batches=[(x, y)], scope="layer",
                                    distribution="erk", seed=0)

A method is a score function (`keras_egf.pruning.scores`); `prune` turns its
scores into masks with exactly the requested kept counts, per layer (from a
sparsity distribution, or explicit `counts`, as the SC-SDC capacity plan
gives them) or over all layers at once (`scope="global"`). Iterative methods
(SynFlow, EGF-guided) re-score the pruned model for `rounds` rounds, the kept
fraction shrinking geometrically to the target, so masks only get sparser.
"""

import collections

import keras
import numpy as np

from keras_egf import validation
from keras_egf.layers import prunable_layers
from keras_egf.pruning import distributions  # noqa: F401  (re-exported)
from keras_egf.pruning import scores as scores_lib
from keras_egf.pruning import structured
from keras_egf.pruning.distributions import (  # noqa: F401
    all_distribution_names,
    check_sparsity,
    get_distribution,
    register_distribution,
)
from keras_egf.pruning.masks import (  # noqa: F401
    among_kept,
    apply_masks,
    check_exclude,
    get_masks,
    kept_count,
    kernel_shapes,
    layer_counts,
    layer_sparsities,
    masked_layers,
    masks_from_scores,
    top_k_mask,
)
from keras_egf.registry import Registry

PruningMethod = collections.namedtuple(
    "PruningMethod", ["score", "needs_data", "rounds", "min_per_layer"])
SCOPES = ("layer", "global")

PRUNING_METHODS = Registry(
    "pruning method", register_with="keras_egf.pruning.register_pruning_method")


def all_pruning_method_names():
    """Names of the registered pruning methods, sorted."""
    return sorted(PRUNING_METHODS)


def register_pruning_method(name, score, needs_data=False, rounds=1,
                            min_per_layer=0, overwrite=False):
    """Registers `score(model, batches, seed, **options) -> {layer: scores}`.

    `rounds` > 1 makes it iterative; `min_per_layer` is the floor of kept
    weights per layer under global ranking. Once registered, `name` is a
    `method` of `prune` and a `pruning` setting of `ComparisonConfig`.
    """
    if not callable(score):
        validation.fail("score", "callable", score)
    return PRUNING_METHODS.register(name, PruningMethod(
        score, bool(needs_data), validation.positive_int("rounds", rounds),
        validation.non_negative_int("min_per_layer", min_per_layer)),
        overwrite=overwrite)


def get_pruning_method(name):
    """Returns the PruningMethod registered as `name`."""
    return PRUNING_METHODS.get(name)


# In name order, as `all_pruning_method_names` (and the report) list them.
register_pruning_method("egf", scores_lib.egf_scores, True, 10, 1)
register_pruning_method("grasp", scores_lib.grasp_scores, True)
register_pruning_method("magnitude", scores_lib.magnitude_scores)
register_pruning_method("random", scores_lib.random_scores)
register_pruning_method("snip", scores_lib.snip_scores, True)
register_pruning_method("synflow", scores_lib.synflow_scores, rounds=100)


def _check_seed(seed):
    return validation.non_negative_int("seed", seed, allow_none=True)


def compute_masks(model, sparsity=None, method="random", distribution="uniform",
                  scope="layer", seed=None, exclude=(), batches=None,
                  counts=None, rounds=None, sparsity_m_by_n=None, **options):
    """Masks {layer name: 0/1 array} of `method`, exact kept counts.

    Args:
        sparsity: target in [0, 1): per layer via `distribution` ("uniform",
            "erk") when scope="layer", of all non-excluded layers together
            when scope="global". Not used when `counts` is given.
        counts: {layer name: kept weights} for every masked layer (e.g. an
            SC-SDC capacity plan): the method only decides which weights.
        batches: [(x, y), ...] for data-driven methods (snip, grasp, egf).
        rounds: iterations of an iterative method (default: the method's).
        sparsity_m_by_n: (m, n): instead of a sparsity, keep the n - m
            highest scores in every n consecutive weights along each
            kernel's input dimension (`keras_egf.pruning.structured`); the
            method scores once (iterative methods too), `sparsity`,
            `counts` and `scope` must be left unset.
        **options: passed to the score function (e.g. loss, temperature).

    The model's masks are changed only by iterative methods (between
    rounds); `prune` applies the final masks.
    """
    spec = get_pruning_method(method)
    _check_seed(seed)
    if sparsity_m_by_n is not None:
        return _m_by_n_masks(model, spec, method, sparsity_m_by_n, sparsity,
                             counts, scope, seed, exclude, batches, options)
    validation.one_of("scope", scope, SCOPES)
    exclude = check_exclude(model, exclude)
    final, total = _targets(model, sparsity, counts, scope, distribution, exclude)
    _check_data(spec, method, batches, " (e.g. --pruning_batches)")
    rounds = validation.positive_int(
        "rounds", spec.rounds if rounds is None else rounds)
    masks = None
    for k in range(1, rounds + 1):
        scores = _scores(model, spec, exclude, batches, seed, options)
        masks = _round_masks(scores, spec, final, total, k / rounds)
        if k < rounds:
            apply_masks(model, masks)
    shapes = kernel_shapes(model)
    return {**masks, **{n: np.ones(shapes[n], np.float32) for n in exclude}}


def _targets(model, sparsity, counts, scope, distribution, exclude):
    """(final kept count per layer, or None; final kept total, or None)."""
    shapes = kernel_shapes(model)
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    if counts is not None:
        missing = sorted(set(shapes) - set(counts))
        if missing or scope != "layer":
            raise ValueError("counts must name every masked layer (missing: "
                             f"{missing}) and go with scope='layer'")
        for n, c in counts.items():
            if not 1 <= int(c) <= sizes[n]:
                validation.fail(f"counts[{n!r}]", f"in [1, {sizes[n]}] (the "
                                "layer's kernel size)", c)
        return {n: int(counts[n]) for n in shapes}, None
    check_sparsity(sparsity)
    if scope == "layer":
        return layer_counts(model, sparsity, distribution, exclude), None
    pruned = [n for n in shapes if n not in exclude]
    return None, kept_count(sum(sizes[n] for n in pruned), sparsity)


def _check_data(spec, method, batches, hint=""):
    if spec.needs_data and not batches:
        raise ValueError(f"Pruning method {method!r} needs data: pass "
                         f"batches=[(x, y), ...]{hint}.")


def _scores(model, spec, exclude, batches, seed, options):
    """The method's scores of the non-excluded layers, -inf where pruned."""
    raw = spec.score(model, batches=batches, seed=seed, **options)
    return among_kept({n: raw[n] for n in kernel_shapes(model) if n not in exclude},
                      get_masks(model))


def _round_masks(scores, spec, final, total, fraction):
    """Masks of one round: kept = final ** fraction of each layer's size
    (per layer) or of all (global), geometric, exactly final at fraction 1."""
    sizes = {n: int(np.size(v)) for n, v in scores.items()}

    def kept(size, target):
        if fraction == 1:
            return target
        return max(target, int(round(size * (target / size) ** fraction)))

    if final is not None:
        return masks_from_scores(scores, counts={
            n: kept(sizes[n], final[n]) for n in scores})
    return masks_from_scores(scores, total=kept(sum(sizes.values()), total),
                             min_per_layer=spec.min_per_layer)


def _m_by_n_masks(model, spec, method, sparsity_m_by_n, sparsity, counts,
                  scope, seed, exclude, batches, options):
    if sparsity is not None or counts is not None or scope != "layer":
        raise ValueError(
            "sparsity_m_by_n fixes the sparsity (m / n per group): leave "
            f"sparsity, counts and scope unset. Received: sparsity={sparsity!r}"
            f", counts={counts!r}, scope={scope!r}")
    exclude = check_exclude(model, exclude)
    shapes = kernel_shapes(model)
    _check_data(spec, method, batches)
    scores = _scores(model, spec, exclude, batches, seed, options)
    masks = {n: structured.m_by_n_mask(
        np.where(np.isfinite(v), v, np.finfo(np.float64).min), sparsity_m_by_n)
        for n, v in scores.items()}
    masks.update({n: np.ones(shapes[n], np.float32) for n in exclude})
    return masks


def prune(model, sparsity=None, method="random", distribution="uniform",
          seed=None, exclude=(), scope="layer", batches=None, counts=None,
          sparsity_m_by_n=None, **options):
    """Computes masks with `method` and applies them, in one call.

    `model` may be any Keras 3 Sequential or functional model: one without
    masks is first copied with every prunable layer masked
    (`prune_low_magnitude`'s conversion, no schedule), the model passed in
    is left unchanged, and the pruned copy is `result.model`. `exclude`: a
    layer name or names left dense (all-ones masks).

    Returns a `PruningResult`: the masks {name: 0/1 array} (a dict), with
    `.model` (the pruned model), `.sparsities` and a short summary as its
    repr.
    """
    copied = False
    if not masked_layers(model):
        if isinstance(model, keras.Model) and prunable_layers(model):
            model, copied = masked_copy(model), True
    masks = compute_masks(model, sparsity, method=method,
                          distribution=distribution, scope=scope, seed=seed,
                          exclude=exclude, batches=batches, counts=counts,
                          sparsity_m_by_n=sparsity_m_by_n, **options)
    apply_masks(model, masks)
    return PruningResult(masks, model, copied)


class PruningResult(dict):
    """What `prune` returns: {name: mask} plus `model` (the pruned model),
    `copied` (True when `model` is a masked copy of a plain model) and
    `sparsities`; its repr is a summary, not the mask arrays."""

    def __init__(self, masks, model, copied=False):
        super().__init__(masks)
        self.model, self.copied = model, copied

    @property
    def sparsities(self):
        """{name: fraction of the weight's entries pruned}."""
        return {n: 1.0 - float(np.mean(m)) for n, m in self.items()}

    def __repr__(self):
        total = sum(int(np.size(m)) for m in self.values())
        kept = sum(int(np.sum(m)) for m in self.values())
        rows = ", ".join(f"{n}: {s:.3f}" for n, s in self.sparsities.items())
        note = " (a pruned copy; the model passed in is unchanged)" \
            if self.copied else ""
        return (f"PruningResult(model={self.model.name!r}{note}, "
                f"{len(self)} weights, sparsity {1 - kept / max(total, 1):.3f} "
                f"overall; {rows})")


def random_masks(model, sparsity, distribution="uniform", seed=None, exclude=()):
    """Random masks with an exact number of kept weights per layer."""
    return compute_masks(model, sparsity, "random", distribution, seed=seed,
                         exclude=exclude)


def magnitude_masks(model, sparsity, distribution="uniform", seed=None,
                    exclude=()):
    """One-shot magnitude pruning: keep the largest |kernel| entries."""
    return compute_masks(model, sparsity, "magnitude", distribution, seed=seed,
                         exclude=exclude)


from keras_egf.pruning.conversion import (  # noqa: E402,F401
    masked_copy,
    prune_low_magnitude,
    prune_scope,
    strip_pruning,
)
from keras_egf.pruning.gradual import (  # noqa: E402,F401
    PruningSummaries,
    UpdatePruningStep,
    update_masks,
)
from keras_egf.pruning.schedules import (  # noqa: E402,F401
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
    as_schedule,
)
from keras_egf.pruning.structured import is_pruned_m_by_n  # noqa: E402,F401
from keras_egf.pruning.dynamic import (  # noqa: E402,F401
    DYNAMIC_METHODS,
    SET,
    DynamicSparsity,
    RigL,
    register_dynamic_method,
)
