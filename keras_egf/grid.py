"""Experiment grids as data (JSON files in configs/grids/), validated before
any training.

A grid file:
    {"name": "smoke",
     "fixed": {"dataset": "mnist5k", "epochs": 3, ...},   # ComparisonConfig fields
     "grid":  {"optimizer": ["sgd", "adam"], "regularizers": ["NR", "BN"], ...},
     "objective": "sparse_test_accuracy"}               # optional
Every key of "fixed" and "grid" is a ComparisonConfig field; every "grid"
value is a non-empty list. Regularizers are written as in the paper: "NR",
"L2", "DA", "SC", "BN" or combinations such as "DA_BN" (or as the binary's
comma lists, "da,bn": `keras_egf.config.parse_regularizers`).
"""

import dataclasses
import itertools
import json

from keras_egf import config as config_lib
from keras_egf.config import (  # noqa: F401  (re-exported)
    ComparisonConfig,
    parse_regularizers,
    regularizer_label,
)

TOP_LEVEL_KEYS = ("name", "fixed", "grid", "objective")
OBJECTIVES = ("sparse_test_accuracy", "dense_test_accuracy",
              "sparse_minus_dense_accuracy")
_FIELDS = {f.name: f for f in config_lib.fields()}
# Grid value types, from the config's fields (regularizers are written as
# labels such as "DA_BN"); a field whose default is None also takes null.
_TYPES = {f.name: (str if f.type is tuple else f.type) for f in config_lib.fields()}
_NULLABLE = {f.name for f in config_lib.fields() if f.default is None}


def _check_value(key, value, where):
    expected = _TYPES[key]
    ok = isinstance(value, expected) and not (
        expected is not bool and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if key in _NULLABLE and value is None:
        ok = True
    if not ok:
        raise ValueError(
            f"{where}.{key}: expected {expected.__name__}, got "
            f"{type(value).__name__} {value!r}")


@dataclasses.dataclass
class Grid:
    """A validated grid: fixed settings and axes to sweep."""
    name: str
    fixed: dict
    axes: dict
    objective: str = "sparse_test_accuracy"

    def size(self):
        """Number of grid points that run (`points()`)."""
        return len(self.points())

    def config(self, values):
        """ComparisonConfig for one grid point (dict axis -> value)."""
        settings = {**self.fixed, **values}
        if "regularizers" in settings:
            settings["regularizers"] = parse_regularizers(settings["regularizers"])
        return ComparisonConfig(**settings).validate()

    def with_seeds(self, seeds):
        """This grid with a `seed` axis (last, so a point's seeds are adjacent)."""
        seeds = list(seeds)
        if not seeds:
            raise ValueError("seeds: expected at least one seed")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ValueError(f"seeds: {s!r} is not an integer >= 0")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds: {seeds} has repeated values")
        fixed = {k: v for k, v in self.fixed.items() if k != "seed"}
        axes = {k: v for k, v in self.axes.items() if k != "seed"}
        axes["seed"] = seeds
        return Grid(self.name, fixed, axes, self.objective)

    def to_dict(self):
        """The grid as its JSON spec."""
        return {"name": self.name, "fixed": dict(self.fixed),
                "grid": {k: list(v) for k, v in self.axes.items()},
                "objective": self.objective}

    def all_points(self):
        """Every combination of the axes as a dict axis -> value, in order."""
        keys = list(self.axes)
        return [dict(zip(keys, combo))
                for combo in itertools.product(*(self.axes[k] for k in keys))]

    def _skip_without_effect(self, point):
        settings = {**self.fixed, **point}
        regs = parse_regularizers(settings.get("regularizers", ""))
        return ("sc" in regs and settings.get("arch", ComparisonConfig.arch) == "mlp"
                and settings.get("depth", ComparisonConfig.depth) == 1)

    def points(self):
        """The grid points that run, in grid order: every combination but
        those with skip connections at depth 1 (see `skipped_points`)."""
        return [p for p in self.all_points() if not self._skip_without_effect(p)]

    def skipped_points(self):
        """Combinations left out: skip connections join equal-width hidden
        layers, so at depth 1 there is none and SC, SC_BN, ... would build
        the same networks as NR, BN, ... and count their cells twice."""
        return [p for p in self.all_points() if self._skip_without_effect(p)]


def parse_grid(spec, source="grid"):
    """Validates a grid dict; raises ValueError naming the bad key."""
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: top level must be a JSON object")
    for key in spec:
        if key not in TOP_LEVEL_KEYS:
            raise ValueError(f"{source}: unknown key {key!r}; allowed: {list(TOP_LEVEL_KEYS)}")
    for key in ("name", "grid"):
        if key not in spec:
            raise ValueError(f"{source}: missing key {key!r}")
    if not isinstance(spec["name"], str) or not spec["name"]:
        raise ValueError(f"{source}.name: expected a non-empty string")
    fixed = spec.get("fixed", {})
    axes = spec["grid"]
    for part, mapping in (("fixed", fixed), ("grid", axes)):
        if not isinstance(mapping, dict):
            raise ValueError(f"{source}.{part}: expected an object")
        for key in mapping:
            if key not in _FIELDS:
                raise ValueError(f"{source}.{part}: unknown key {key!r}; "
                                 f"allowed: {sorted(_FIELDS)}")
    for key, value in fixed.items():
        _check_value(key, value, f"{source}.fixed")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}.grid.{key}: expected a non-empty list")
        if key in fixed:
            raise ValueError(f"{source}.grid.{key}: also set in fixed")
        for value in values:
            _check_value(key, value, f"{source}.grid")
    objective = spec.get("objective", "sparse_test_accuracy")
    if objective not in OBJECTIVES:
        raise ValueError(f"{source}.objective: {objective!r} is not one of {list(OBJECTIVES)}")
    grid = Grid(spec["name"], dict(fixed), dict(axes), objective)
    if not grid.points():
        raise ValueError(f"{source}: every grid point has skip connections at "
                         "depth 1, where there is no skip to add (use depth >= 2)")
    for point in grid.points():  # every point must be a valid config
        try:
            grid.config(point)
        except ValueError as e:
            raise ValueError(f"{source}: grid point {point}: {e}") from None
    return grid


def load_grid(path):
    """Reads and validates a grid JSON file."""
    try:
        with open(path) as f:
            spec = json.load(f)
    except OSError as e:
        raise ValueError(f"grid={path!r}: cannot be read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"grid={path!r}: invalid JSON ({e})") from None
    return parse_grid(spec, source=str(path))
