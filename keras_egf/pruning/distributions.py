"""Per-layer sparsity distributions, as pure functions (JaxPruner style).

Each distribution maps an ordered dict {layer name: kernel shape}, a target
sparsity in [0, 1) and layer names to exclude (kept dense) to a dict
{layer name: sparsity}. Look them up by name with `get_distribution`.
"""

import math

import numpy as np


def check_sparsity(sparsity, name="sparsity"):
    """Raises ValueError unless 0 <= sparsity < 1 (a finite number)."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a number in [0, 1). Received: {name}={sparsity!r}"
        ) from None
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"{name} must be in [0, 1). Received: {name}={sparsity!r}"
        )
    return value


def _check_exclude(shapes, exclude):
    unknown = sorted(set(exclude) - set(shapes))
    if unknown:
        raise ValueError(
            f"Excluded layers {unknown} are not among the prunable layers "
            f"{list(shapes)}."
        )


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
    so the overall sparsity of all layers together is `sparsity`.
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
        if not raw:
            raise ValueError(
                f"ERK sparsity={sparsity} cannot be reached with layers "
                f"{sorted(dense)} kept dense."
            )
        eps = rhs / divisor
        max_raw = max(raw.values())
        if max_raw * eps > 1.0:
            dense.update(n for n, r in raw.items() if r == max_raw)
            continue
        break
    return {
        n: (0.0 if n in dense else 1.0 - eps * raw[n]) for n in shapes
    }


_DISTRIBUTIONS = {"uniform": uniform, "erk": erk}


def all_distribution_names():
    """Names of the registered sparsity distributions."""
    return sorted(_DISTRIBUTIONS)


def register_distribution(name, fn):
    """Registers `fn(shapes, sparsity, exclude) -> {name: sparsity}`."""
    _DISTRIBUTIONS[name] = fn


def get_distribution(name):
    """Returns the distribution registered as `name`."""
    if name not in _DISTRIBUTIONS:
        raise ValueError(
            f"Unknown sparsity distribution {name!r}. Supported: "
            f"{all_distribution_names()}"
        )
    return _DISTRIBUTIONS[name]
