"""The comparison config: every setting of one SC-SDC run, declared once.

Each field of `ComparisonConfig` carries its default, help text and choices
(`dataclasses.field` metadata); the training binary's flags
(`trainers/train.py`) and the grid's value types (`keras_egf.grid`) are
derived from these fields, and `validate` checks them all.
"""

import dataclasses
import math
import reprlib

import numpy as np

from keras_egf.architectures import ACTIVATIONS, ARCHITECTURE_NAMES
from keras_egf.data import DATASETS
from keras_egf.model import DEFAULT_GRADIENT_FLOW_EVERY
from keras_egf.pruning import all_pruning_method_names
from keras_egf.pruning.dynamic import METHODS as DYNAMIC_SPARSITY_METHODS

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
REGULARIZERS = ("l2", "da", "sc", "bn")
# The regularisers have two spellings, both accepted everywhere (the
# --regularizers flag, grid files, ComparisonConfig): the names above in a
# comma list ("l2,bn") and the paper's (and grids') labels, the names in
# capitals joined by "_" ("L2_BN", "SC_BN"), "NR" for none. Any case.
NO_REGULARIZERS = "NR"
MAX_SEED = 2**32 - 1  # numpy.random.seed's largest, which Keras seeds
DEFAULT_EGF_POINTS = 5  # or `epochs`, when fewer
MODEL_CHOICES = ("both", "sparse", "dense")
PRUNING_METHODS = tuple(all_pruning_method_names())  # the pruning registry
EGF_DATA = ("train", "test")
SPARSE_TRAINING = ("static",) + DYNAMIC_SPARSITY_METHODS
DATASET_NAMES = tuple(sorted(DATASETS))


def parse_regularizers(value):
    """The regularisers in `value` as a tuple of names, order kept, not
    checked (`ComparisonConfig.validate` checks them).

    `value`: a label ("NR", "BN", "SC_BN", "DA_L2_SC_BN"), a comma list
    ("l2,bn", "SC,bn") or a sequence of either (("BN",), ["da", "L2_BN"]),
    in any case; "", "NR" and "none" are no regulariser.
    "DA_BN" -> ("da", "bn"); "NR" -> ().
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        if not isinstance(item, str):
            names.append(item)  # left for validate to name
            continue
        if item.strip().upper() in ("", NO_REGULARIZERS, "NONE"):
            continue
        names.extend(part.strip().lower() for part in item.split("_"))
    return tuple(names)


def regularizer_label(regularizers):
    """The paper's label of a tuple of names: () -> "NR";
    ("da", "bn") -> "DA_BN"."""
    return "_".join(r.upper() for r in regularizers) or NO_REGULARIZERS


def setting(default, help, choices=None):
    """A config field with its help text and (optional) allowed values."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "choices": choices})


def fields():
    """The config's fields, in declaration order."""
    return dataclasses.fields(ComparisonConfig)


def field_names():
    """Names of every setting."""
    return tuple(f.name for f in fields())


def type_problem(name, value, labels_only=False):
    """Why `value` is not of setting `name`'s declared type (a short text:
    "expected int, got str 'sixteen'"), or None. Numbers are not bools, an
    int is a float, a setting whose default is None also takes None. The
    regularisers take a label or comma list (a str) or, unless
    `labels_only` (grid files), a list of names (results.json's config)."""
    field = _FIELDS[name]
    if value is None and field.default is None:
        return None
    if field.type is tuple:
        ok = isinstance(value, str) or (not labels_only and isinstance(
            value, list) and all(isinstance(v, str) for v in value))
        expected = "str" if labels_only else "str or list of str"
    else:
        types = (int, float) if field.type is float else (field.type,)
        ok = isinstance(value, types) and (
            field.type is bool or not isinstance(value, bool))
        expected = field.type.__name__
    if ok:
        return None
    return f"expected {expected}, got {type(value).__name__} {short_repr(value)}"


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def short_repr(value):
    """repr(value) cut to a line (a bad value can be a huge or deep list)."""
    return _SHORT.repr(value)


# The only settings `ComparisonConfig.validate`'s checks of two or more
# settings together read (sc and sparse_width need arch='mlp', sparse_width
# >= dense_width, wrn_depth for arch='wrn', egf_points <= epochs); every
# other check reads one setting. `keras_egf.grid` validates a grid's axes
# one value at a time and only the combinations of these together: keep it
# in step with `validate`.
COMBINED_CHECKS = ("regularizers", "arch", "dense_width", "sparse_width",
                   "wrn_depth", "egf_points", "epochs")

def recorded_problems(config, required=()):
    """Why `config`, a results.json's config object, is not a config
    keras-egf wrote: a list of "config.NAME: what" strings ([] if none).
    Each setting must have its declared type (`type_problem`) and the whole,
    settings missing counting as their defaults (an older keras-egf did not
    write the newer ones), must pass `ComparisonConfig.validate`; the
    settings in `required` must be there. Keys that are no setting are left
    alone (a newer keras-egf's)."""
    out = [f"config.{name}: missing" for name in required if name not in config]
    known = {}
    for name in field_names():
        if name in config:
            why = type_problem(name, config[name])
            if why:
                out.append(f"config.{name}: {why}")
            else:
                known[name] = config[name]
    if not out:
        try:
            ComparisonConfig(**known).validate()
        except ValueError as e:
            out.append(f"config.{e}")
    return out


@dataclasses.dataclass
class ComparisonConfig:
    """Everything that defines one sparse-vs-dense comparison."""
    dataset: str = setting("mnist5k", "Dataset (tfds ones must be prepared "
                           "once, on a connected machine: keras-egf-data "
                           "prepare NAME --data_dir=DIR).",
                           choices=DATASET_NAMES)
    optimizer: str = setting("adam", "Optimizer (momentum = SGD with momentum "
                             "0.9).", choices=OPTIMIZERS)
    learning_rate: float = setting(0.001, "Learning rate (> 0).")
    regularizers: tuple = setting(
        (), "Comma list of l2, da, sc, bn, or the grids' label (NR, L2, BN, "
        "SC_BN, DA_L2_SC_BN, ...); any case; empty or NR = none.",
        choices=REGULARIZERS)
    weight_decay: float = setting(5e-4, "L2 factor (l2) and AdamW's decay.")
    arch: str = setting("mlp", "Architecture: mlp (--depth x --dense_width), "
                        "cnn (conv 32-64-64-128 + dense head 128, times "
                        "--widen_factor) or wrn (Wide ResNet --wrn_depth-"
                        "--widen_factor).", choices=ARCHITECTURE_NAMES)
    depth: int = setting(1, "Number of hidden layers of the MLP (>= 1).")
    dense_width: int = setting(308, "Hidden width of the dense model.")
    sparse_width_multiplier: float = setting(
        2.0, "Sparse width = multiplier x dense width (>= 1).")
    sparse_width: int = setting(
        None, "Sparse hidden width; overrides --sparse_width_multiplier (the "
        "paper's grids keep one sparse width, ~3076, across dense widths).")
    wrn_depth: int = setting(16, "Wide ResNet depth (6n + 4: 16, 28, ...).")
    widen_factor: int = setting(1, "Channel multiplier of the dense cnn/wrn "
                                "(WRN-16-4: --wrn_depth=16 --widen_factor=4).")
    activation: str = setting("relu", "Hidden activation.", choices=ACTIVATIONS)
    epochs: int = setting(5, "Training epochs (>= 1).")
    batch_size: int = setting(128, "Batch size (>= 1).")
    seed: int = setting(0, "Seed of masks, init and data order.")
    pruning: str = setting("random", "Pruning method of the sparse model: "
                           "which weights each layer keeps (the capacity plan "
                           "fixes how many).", choices=PRUNING_METHODS)
    sparse_training: str = setting(
        "static", "Sparse model's masks during training: static (fixed), "
        "set (drop smallest, grow random) or rigl (drop smallest, grow "
        "largest gradient), per layer, counts kept.", choices=SPARSE_TRAINING)
    dst_update_every: int = setting(100, "Steps between set/rigl mask updates.")
    dst_drop_fraction: float = setting(
        0.3, "Initial fraction of active weights a set/rigl update replaces "
        "(cosine decay to 0 at 75 % of training).")
    pruning_batches: int = setting(1, "Training batches the data-driven "
                                   "pruning methods (snip, grasp, egf) score on.")
    egf_points: int = setting(
        None, "Epochs at which EGF is measured on a fixed batch set, spread "
        f"evenly (1..epochs; default: min({DEFAULT_EGF_POINTS}, epochs)).")
    egf_batches: int = setting(4, "Batches in the fixed EGF batch set.")
    egf_data: str = setting("train", "Data of the fixed EGF batch set.",
                            choices=EGF_DATA)
    gradient_flow_every: int = setting(
        DEFAULT_GRADIENT_FLOW_EVERY, "Per-step gf/EGF (History, TensorBoard "
        "epoch_* scalars) on each epoch's steps 0, N, 2N, ... (>= 1; 1 = every "
        "step). The fixed-batch EGF points (--egf_points) are not affected.")
    data_dir: str = setting(None, "tensorflow-datasets data_dir.")
    jit_compile: bool = setting(False, "Compile training steps with XLA.")
    models: str = setting("both", "Models to train.", choices=MODEL_CHOICES)

    def validate(self):
        """Raises ValueError naming the first bad field and its value."""
        def bad(name, why):
            raise ValueError(f"{name}={getattr(self, name)!r}: {why}")

        def choice(name, options):
            if getattr(self, name) not in options:
                bad(name, f"must be one of {list(options)}")

        def positive_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                bad(name, "must be an integer >= 1")

        for f in fields():
            if f.metadata["choices"] and f.type is not tuple:
                choice(f.name, f.metadata["choices"])
        given = self.regularizers
        self.regularizers = parse_regularizers(given)
        for r in self.regularizers:
            if r not in REGULARIZERS:
                shown = given if isinstance(given, str) else ",".join(map(str, given))
                raise ValueError(
                    f"regularizers={shown!r}: unknown regularizer {r!r}; use a "
                    f"comma list of {list(REGULARIZERS)} or a label such as "
                    f"'NR', 'BN', 'SC_BN', 'DA_L2_SC_BN'")
        repeated = sorted({r for r in self.regularizers
                           if self.regularizers.count(r) > 1})
        if repeated:
            shown = given if isinstance(given, str) else ",".join(map(str, given))
            raise ValueError(f"regularizers={shown!r}: {', '.join(repeated)} "
                             "named twice")
        lr = self.learning_rate
        if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            bad("learning_rate", "must be a finite number > 0")
        wd = self.weight_decay
        if not isinstance(wd, (int, float)) or not math.isfinite(wd) or wd < 0:
            bad("weight_decay", "must be a finite number >= 0")
        e = self.epochs
        if self.egf_points is None and isinstance(e, (int, np.integer)) and \
                not isinstance(e, bool) and e >= 1:
            self.egf_points = min(DEFAULT_EGF_POINTS, int(e))
        for name in ("depth", "dense_width", "epochs", "batch_size", "widen_factor",
                     "egf_points", "egf_batches", "gradient_flow_every",
                     "dst_update_every",
                     "pruning_batches"):
            positive_int(name)
        s = self.seed
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or \
                not 0 <= s <= MAX_SEED:
            bad("seed", "must be an integer in [0, 2**32 - 1] (NumPy's seed "
                "range)")
        m = self.sparse_width_multiplier
        if not isinstance(m, (int, float)) or not math.isfinite(m) or m < 1:
            bad("sparse_width_multiplier", "must be a finite number >= 1")
        if self.sparse_width is not None:
            v = self.sparse_width
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or \
                    v < self.dense_width:
                bad("sparse_width", f"must be an integer >= dense_width="
                    f"{self.dense_width} (or None to use the multiplier)")
        f = self.dst_drop_fraction
        if not isinstance(f, (int, float)) or not math.isfinite(f) or not 0 < f <= 1:
            bad("dst_drop_fraction", "must be in (0, 1]")
        if self.arch != "mlp":
            if "sc" in self.regularizers:
                bad("regularizers", f"sc (skip connections) applies to "
                    f"arch='mlp' only (the cnn has none, a wrn has its own); "
                    f"arch={self.arch!r}")
            if self.sparse_width is not None:
                bad("sparse_width", f"applies to arch='mlp' only; use "
                    f"--sparse_width_multiplier for arch={self.arch!r}")
        if self.arch == "wrn":
            from keras_egf.architectures.wrn import blocks_per_group
            positive_int("wrn_depth")
            try:
                blocks_per_group(self.wrn_depth)
            except ValueError:
                bad("wrn_depth", "must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...)")
        if self.egf_points > self.epochs:
            bad("egf_points", f"must be <= epochs={self.epochs}")
        return self

    def dense_widths(self):
        """The dense network's widths: an MLP's hidden widths, a convnet's
        channels (keras_egf.architectures)."""
        from keras_egf.architectures import get_architecture
        return get_architecture(self.arch).dense_widths(
            self.depth, self.dense_width, self.widen_factor, self.wrn_depth)

    def effective_multiplier(self):
        """Sparse width / dense width: `sparse_width` when set (the paper's
        grids, read as one sparse width at several densities), else
        `sparse_width_multiplier`."""
        if self.sparse_width is not None:
            return self.sparse_width / self.dense_width
        return self.sparse_width_multiplier

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["regularizers"] = list(self.regularizers)
        return d


_FIELDS = {f.name: f for f in fields()}
