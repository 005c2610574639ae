"""Per-layer sparsity distributions, as pure functions (JaxPruner style).

Each distribution maps an ordered dict {layer name: kernel shape}, a target
sparsity in [0, 1) and layer names to exclude (kept dense) to a dict
{layer name: sparsity}. They are a `Registry` (`DISTRIBUTIONS`), looked up
by name with `get_distribution`; add one with `register_distribution`.
"""

import math
import numbers

import numpy as np

from keras_egf import validation
from keras_egf.registry import Registry


def _is_real(value):
    """A real number: int, float, a NumPy scalar or a 0-d array or tensor of
    a numeric dtype; not a bool or a string."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    if getattr(value, "dtype", None) is None:
        return False
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 (anything that is no array)
        return False
    return array.ndim == 0 and array.dtype.kind in "fiu"


def check_sparsity(sparsity, name="sparsity"):
    """Raises ValueError unless 0 <= sparsity < 1 (a finite real number: not
    a bool, nor a string that would parse as one); returns it as a float."""
    if not _is_real(sparsity):
        validation.fail(name, "a number in [0, 1), not "
                        f"{type(sparsity).__name__}", sparsity)
    value = float(sparsity)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        validation.fail(name, "a number in [0, 1)", sparsity)
    return value


def _check_exclude(shapes, exclude):
    unknown = sorted(set(exclude) - set(shapes))
    if unknown:
        raise ValueError(
            f"Excluded layers {unknown} are not among the prunable layers "
            f"{list(shapes)}."
        )


def _budget_error(shapes, sparsity, exclude, name):
    """The ValueError for excluded (dense) layers that alone hold at least
    the 1 - sparsity share of the weights that may be kept overall."""
    sizes = {n: int(np.prod(s)) for n, s in shapes.items()}
    total = sum(sizes.values())
    dense = sum(sizes[n] for n in set(exclude))
    excluded = [n for n in shapes if n in set(exclude)]
    if dense == total:
        return ValueError(
            f"{name} cannot reach sparsity={sparsity!r}: every layer is "
            f"excluded (kept dense), so only sparsity=0 is possible. "
            f"Received: sparsity={sparsity!r}, exclude={excluded!r}")
    limit = 1.0 - dense / total
    largest = math.floor(limit * 1e4) / 1e4
    if largest >= limit:
        largest -= 1e-4
    return ValueError(
        f"{name} cannot reach sparsity={sparsity!r} over all layers with "
        f"{excluded} excluded (kept dense): they hold {dense / total:.2%} of "
        f"the weights ({dense:,} of {total:,}), so the overall sparsity must "
        f"stay below {limit:.6g}, where every other layer would be empty (the "
        f"largest possible to 4 decimals: {largest:.4f}). Pass a lower "
        "sparsity, exclude fewer layers, or use the 'uniform' distribution "
        "(it prunes every other layer to `sparsity` itself). Received: "
        f"sparsity={sparsity!r}, exclude={excluded!r}")


def uniform(shapes, sparsity, exclude=()):
    """Every layer gets `sparsity`; excluded layers get 0."""
    sparsity = check_sparsity(sparsity)
    _check_exclude(shapes, exclude)
    return {n: (0.0 if n in exclude else sparsity) for n in shapes}


def erk(shapes, sparsity, exclude=(), power_scale=1.0):
    """Erdős–Rényi-Kernel (Evci et al. 2020, RigL), overall `sparsity`.

    Layer l's density is proportional to (sum(shape_l) / prod(shape_l)) **
    power_scale; layers whose density would exceed 1 are kept dense and the
    rest rescaled. Excluded layers are dense and the others make up for them,
    so the overall sparsity of all layers together is `sparsity` (RigL's
    code instead leaves layers of its `custom_sparsity_map` out of the
    budget). Excluded layers holding 1 - sparsity of all weights or more
    leave nothing to the others: ValueError, naming them, their share and
    the largest sparsity still possible.
    """
    sparsity = check_sparsity(sparsity)
    _check_exclude(shapes, exclude)
    dense = set(exclude)
    while True:
        divisor = rhs = 0.0
        raw = {}
        for name, shape in shapes.items():
            n = float(np.prod(shape))
            if name in dense:
                rhs -= n * sparsity
            else:
                rhs += n * (1.0 - sparsity)
                raw[name] = (float(np.sum(shape)) / n) ** power_scale
                divisor += raw[name] * n
        if not raw:  # every layer excluded
            if sparsity > 0.0:
                raise _budget_error(shapes, sparsity, exclude, "ERK")
            break
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps > 1.0:
            dense.update(n for n, r in raw.items() if r == max_raw)
            continue
        break
    result = {n: (0.0 if n in dense else 1.0 - eps * raw[n]) for n in shapes}
    # Excluded layers holding 1 - sparsity of the weights or more leave the
    # others a budget <= 0 (eps <= 0): densities <= 0, sparsities >= 1.
    if any(not 0.0 <= v < 1.0 for v in result.values()):
        raise _budget_error(shapes, sparsity, exclude, "ERK")
    return result


DISTRIBUTIONS = Registry(
    "sparsity distribution",
    register_with="keras_egf.pruning.register_distribution")


def all_distribution_names():
    """Names of the registered sparsity distributions, sorted."""
    return sorted(DISTRIBUTIONS)


def register_distribution(name, fn, overwrite=False):
    """Registers `fn(shapes, sparsity, exclude) -> {name: sparsity}`; then
    `name` is a `distribution` of `keras_egf.pruning.prune`."""
    if not callable(fn):
        raise ValueError(f"`fn` must be callable. Received: fn={fn!r}")
    return DISTRIBUTIONS.register(name, fn, overwrite=overwrite)


def get_distribution(name):
    """Returns the distribution registered as `name`."""
    return DISTRIBUTIONS.get(name)


register_distribution("erk", erk)
register_distribution("uniform", uniform)
