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
# What `ComparisonConfig.skip_without_effect`, which leaves points out, reads.
SKIP_RULE_SETTINGS = ("regularizers", "arch", "depth")
_FIELDS = {f.name: f for f in config_lib.fields()}
_short = config_lib.short_repr


def _check_value(key, value, where):
    why = config_lib.type_problem(key, value, labels_only=True)
    if why:
        raise ValueError(f"{where}.{key}: {why}")


def _setting(key, value):
    """What a grid value sets, for finding two spellings of one setting:
    the regularisers as a set of names ("NR" and "", "l2,bn" and "BN_L2"
    are one each), numbers by value (1 and 1.0 are one)."""
    if key == "regularizers" and isinstance(value, str):
        return frozenset(parse_regularizers(value))
    return value


def _check_distinct(key, values, where):
    """Refuses an axis that lists one setting twice (the oracle would run it
    once and the sweep never finish; the report would count it twice)."""
    seen = {}
    for value in values:
        setting = _setting(key, value)
        if setting in seen:
            first = seen[setting]
            same = (f"{_short(value)} is listed twice" if first == value and
                    type(first) is type(value) else
                    f"{_short(first)} and {_short(value)} are one setting")
            raise ValueError(
                f"{where}.{key}: {same}; list each setting once")
        seen[setting] = value


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
        return ComparisonConfig(**{**self.fixed, **values}).validate()

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

    def _skip_rule(self):
        """point -> True when it asks for skip connections where they add
        nothing (`ComparisonConfig.skip_without_effect`: SC at depth 1),
        decided once per (regularizers, arch, depth) value (a large grid
        has millions of points and a handful of these)."""
        decided = {}

        def skip(point):
            settings = {**self.fixed, **point}
            key = tuple(settings.get(k, getattr(ComparisonConfig, k))
                        for k in SKIP_RULE_SETTINGS)
            if key not in decided:
                decided[key] = ComparisonConfig(**dict(zip(
                    SKIP_RULE_SETTINGS, key))).skip_without_effect
            return decided[key]
        return skip

    def points(self):
        """The grid points that run, in grid order: every combination but
        those with skip connections at depth 1 (see `skipped_points`)."""
        skip = self._skip_rule()
        return [p for p in self.all_points() if not skip(p)]

    def skipped_points(self):
        """Combinations left out: skip connections join equal-width hidden
        layers, so at depth 1 there is none and SC, SC_BN, ... would build
        the same networks as NR, BN, ... and count their cells twice."""
        skip = self._skip_rule()
        return [p for p in self.all_points() if skip(p)]

    def configs_over(self, names):
        """[(point, config)], one for each combination of the values the
        axes among `names` take in the points that run, the other axes at
        the first point's values where that point runs: what a check that
        reads only the settings `names` needs to see, without building
        every point's config (a grid can have millions)."""
        first = self._first_point()
        varied = [k for k in self.axes if k in names]
        # A combination the skip rule leaves out beside the first point
        # (SC at its depth 1) may run at another depth, arch or regularizer.
        rule_axes = [k for k in SKIP_RULE_SETTINGS
                     if k in self.axes and k not in varied]
        skip = self._skip_rule()
        out = []
        for combo in itertools.product(*(self.axes[k] for k in varied)):
            point = {**first, **dict(zip(varied, combo))}
            for other in itertools.product(*(self.axes[k] for k in rule_axes)):
                candidate = {**point, **dict(zip(rule_axes, other))}
                if not skip(candidate):
                    out.append((candidate, self.config(candidate)))
                    break
        return out

    def _first_point(self):
        """The first point that runs (grid order)."""
        skip = self._skip_rule()
        keys = list(self.axes)
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            point = dict(zip(keys, combo))
            if not skip(point):
                return point
        raise ValueError(f"grid {self.name!r}: every point is left out")

    def check_points(self, where="grid"):
        """Raises ValueError unless every point that runs is a valid config,
        axis by axis (`_validate_axes`); the error names the axis and
        value, or the combination, that is not."""
        _validate_axes(self, where)


def _validate_axes(grid, where):
    """Checks every point of `grid` is a valid config without building them
    all (a grid can have millions): the combinations of the axes that
    `ComparisonConfig.validate` checks together (`COMBINED_CHECKS`, the
    others at their first value), then every other axis one value at a time
    beside the first valid combination. Equivalent to validating each point:
    validate's other checks read one setting each."""
    combined = [k for k in grid.axes if k in config_lib.COMBINED_CHECKS
                or k in SKIP_RULE_SETTINGS]  # the skip rule (`points`)
    first = {k: v[0] for k, v in grid.axes.items()}
    skip = grid._skip_rule()
    base = None
    for combo in itertools.product(*(grid.axes[k] for k in combined)):
        point = {**first, **dict(zip(combined, combo))}
        if skip(point):
            continue
        try:
            grid.config(point)
        except ValueError as e:
            shown = {k: point[k] for k in combined} or point
            raise ValueError(f"{where}: grid point {shown}: {e}") from None
        base = point if base is None else base
    if base is None:
        raise ValueError(f"{where}: every grid point has skip connections at "
                         "depth 1, where there is no skip to add (use depth >= 2)")
    for key, values in grid.axes.items():
        if key in combined:
            continue
        for value in values:
            try:
                grid.config({**base, key: value})
            except ValueError as e:
                raise ValueError(f"{where}.grid.{key}: {e}") from None


def _check_keys(where, mapping, allowed):
    for key in mapping:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {_short(key)}; "
                             f"allowed: {allowed}")


def parse_grid(spec, source="grid"):
    """Validates a grid dict; raises ValueError naming the bad key (and the
    file, `source`)."""
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: top level must be a JSON object")
    _check_keys(source, spec, list(TOP_LEVEL_KEYS))
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
        _check_keys(f"{source}.{part}", mapping, sorted(_FIELDS))
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
        raise ValueError(f"{source}.objective: {_short(objective)} is not one "
                         f"of {list(OBJECTIVES)}")
    grid = Grid(spec["name"], dict(fixed), dict(axes), objective)
    grid.check_points(source)
    for key, values in axes.items():
        _check_distinct(key, values, f"{source}.grid")
    return grid


def _unique_keys(pairs):
    """A JSON object's dict; ValueError naming a key given twice (json
    would keep the last silently)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(
                f"key {key!r} is given twice in one object ({_short(out[key])}, "
                f"then {_short(value)}); JSON keeps only the last, so the first "
                "would be dropped without a word: give each key once")
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    pass


def load_grid(path):
    """Reads and validates a grid JSON file (UTF-8, each key once)."""
    where = f"grid={str(path)!r}"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"{where}: cannot be read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text (byte "
                         f"{raw[e.start]:#04x} at offset {e.start}); save the "
                         "grid as UTF-8") from None
    try:
        spec = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise ValueError(f"{where}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply to be a grid (a grid "
                         "is an object of objects of lists of values)") from None
    return parse_grid(spec, source=str(path))
