"""The comparison config: every setting of one SC-SDC run, declared once.

Each field of `ComparisonConfig` carries its default, help text and rule
(`setting`: what its value must be, and, for the few settings checked
together, `Relation`s to the settings they read). The training binary's
flags (`trainers/train.py`: their help and choices), the grid's value types
(`keras_egf.grid`) and `ComparisonConfig.validate` are derived from these
fields. Named choices (optimizer, architecture, pruning method, sparse
training) are read from their registries when used, so a name registered
after import is accepted everywhere. The config answers the questions its
settings imply (`batch_norm`, `skip_connections`, `augmentation`,
`l2_factor`, `model_names`, `skip_without_effect`), so no other module reads
regulariser strings.
"""

import dataclasses
import reprlib

from keras_egf import validation
from keras_egf.architectures import ACTIVATIONS, ARCHITECTURES
from keras_egf.architectures.wrn import blocks_per_group
from keras_egf.data import DATASETS
from keras_egf.model import DEFAULT_GRADIENT_FLOW_EVERY
from keras_egf.optimizers import OPTIMIZERS  # noqa: F401  (re-exported)
from keras_egf.pruning import PRUNING_METHODS  # noqa: F401  (re-exported)
from keras_egf.pruning import dynamic
from keras_egf.settings import (  # noqa: F401  (SettingError, setting re-exported)
    POSITIVE_INT,
    Relation,
    Rule,
    SettingError,
    at_least,
    check_setting,
    in_interval,
    one_of,
    registered,
    setting,
)

# OPTIMIZERS, PRUNING_METHODS and ARCHITECTURES are registries: iterating
# one gives the names registered now.
REGULARIZERS = ("l2", "da", "sc", "bn")
# The regularisers have two spellings, both accepted everywhere (the
# --regularizers flag, grid files, ComparisonConfig): the names above in a
# comma list ("l2,bn") and the paper's (and grids') labels, the names in
# capitals joined by "_" ("L2_BN", "SC_BN"), "NR" for none. Any case.
NO_REGULARIZERS = "NR"
MAX_SEED = 2**32 - 1  # numpy.random.seed's largest, which Keras seeds
DEFAULT_EGF_POINTS = 5  # or `epochs`, when fewer
MODEL_CHOICES = ("both", "sparse", "dense")
EGF_DATA = ("train", "test")
DATASET_NAMES = tuple(sorted(DATASETS))


def _dynamic_methods():
    """The dynamic sparse training methods (`keras_egf.pruning.dynamic`),
    read when called: the one place the config names them."""
    return dynamic.DYNAMIC_METHODS


def sparse_training_modes():
    """The `sparse_training` choices now: "static", then the dynamic sparse
    training methods."""
    return ("static",) + tuple(_dynamic_methods())


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


def _seed(name, value):
    if not validation.is_int(value) or not 0 <= value <= MAX_SEED:
        validation.fail(name, "an integer in [0, 2**32 - 1] (NumPy's seed "
                        "range)", value)
    return value


def _regularizers(name, value):
    """`value` parsed (`parse_regularizers`): known names, each once."""
    names = parse_regularizers(value)
    shown = value if isinstance(value, str) else ",".join(map(str, value))
    for r in names:
        if r not in REGULARIZERS:
            validation.fail(name, f"a comma list of {list(REGULARIZERS)} or a "
                            "label such as 'NR', 'BN', 'SC_BN', 'DA_L2_SC_BN' "
                            f"(unknown regularizer {r!r})", shown)
    repeated = sorted({r for r in names if names.count(r) > 1})
    if repeated:
        validation.fail(name, "a list naming each regularizer once ("
                        f"{', '.join(repeated)} named twice)", shown)
    return names


def _sc_needs_skip_option(config):
    if config.skip_connections and \
            not ARCHITECTURES.get(config.arch).skip_option:
        archs = [n for n in ARCHITECTURES if ARCHITECTURES[n].skip_option]
        where = f"arch={archs[0]!r}" if len(archs) == 1 else f"arch in {archs}"
        validation.fail("regularizers", f"without sc for arch={config.arch!r}: "
                        f"sc (skip connections) applies to {where} only (the "
                        "cnn has none, a wrn has its own)",
                        ",".join(config.regularizers))


def _sparse_width_of_mlp(config):
    width = config.sparse_width
    if width is None:
        return
    if not validation.is_int(width) or width < config.dense_width:
        validation.fail("sparse_width", "an integer >= dense_width="
                        f"{config.dense_width} (or None to use "
                        "sparse_width_multiplier)", width)
    if config.arch != "mlp":
        validation.fail("sparse_width", "None for arch="
                        f"{config.arch!r} (it applies to arch='mlp' only; use "
                        "sparse_width_multiplier)", width)


def _wrn_depth(config):
    if config.arch == "wrn":
        blocks_per_group(config.wrn_depth, "wrn_depth")


def _egf_points_within_epochs(config):
    if config.egf_points > config.epochs:
        validation.fail("egf_points", f"<= epochs={config.epochs}",
                        config.egf_points)


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
        except SettingError as e:
            out.append(f"config.{e.setting}: {e}")
    return out


@dataclasses.dataclass
class ComparisonConfig:
    """Everything that defines one sparse-vs-dense comparison."""
    dataset: str = setting("mnist5k", "Dataset (tfds ones must be prepared "
                           "once, on a connected machine: keras-egf-data "
                           "prepare NAME --data_dir=DIR).",
                           one_of(DATASET_NAMES))
    optimizer: str = setting("adam", "Optimizer (momentum = SGD with momentum "
                             "0.9).", registered(OPTIMIZERS))
    learning_rate: float = setting(0.001, "Learning rate.",
                                   at_least(0, low_open=True))
    regularizers: tuple = setting(
        (), "Comma list of l2, da, sc, bn, or the grids' label (NR, L2, BN, "
        "SC_BN, DA_L2_SC_BN, ...); any case; empty or NR = none.",
        Rule(lambda: "known regularizers, each once", _regularizers,
             stores=True),
        Relation(("arch",), _sc_needs_skip_option))
    weight_decay: float = setting(5e-4, "L2 factor (l2) and AdamW's decay.",
                                  at_least(0))
    arch: str = setting("mlp", "Architecture: mlp (--depth x --dense_width), "
                        "cnn (conv 32-64-64-128 + dense head 128, times "
                        "--widen_factor) or wrn (Wide ResNet --wrn_depth-"
                        "--widen_factor).", registered(ARCHITECTURES))
    depth: int = setting(1, "Number of hidden layers of the MLP.", POSITIVE_INT)
    dense_width: int = setting(308, "Hidden width of the dense model.",
                               POSITIVE_INT)
    sparse_width_multiplier: float = setting(
        2.0, "Sparse width = multiplier x dense width.", at_least(1))
    sparse_width: int = setting(
        None, "Sparse hidden width; overrides --sparse_width_multiplier (the "
        "paper's grids keep one sparse width, ~3076, across dense widths).",
        relation=Relation(("arch", "dense_width"), _sparse_width_of_mlp))
    wrn_depth: int = setting(16, "Wide ResNet depth (6n + 4: 16, 28, ...).",
                             relation=Relation(("arch",), _wrn_depth))
    widen_factor: int = setting(1, "Channel multiplier of the dense cnn/wrn "
                                "(WRN-16-4: --wrn_depth=16 --widen_factor=4).",
                                POSITIVE_INT)
    activation: str = setting("relu", "Hidden activation.", one_of(ACTIVATIONS))
    epochs: int = setting(5, "Training epochs.", POSITIVE_INT)
    batch_size: int = setting(128, "Batch size.", POSITIVE_INT)
    seed: int = setting(0, "Seed of masks, init and data order.",
                        Rule(lambda: "an integer in [0, 2**32 - 1]", _seed))
    pruning: str = setting("random", "Pruning method of the sparse model: "
                           "which weights each layer keeps (the capacity plan "
                           "fixes how many).", registered(PRUNING_METHODS))
    sparse_training: str = setting(
        "static", "Sparse model's masks during training: static (fixed), "
        "set (drop smallest, grow random) or rigl (drop smallest, grow "
        "largest gradient), per layer, counts kept.",
        one_of(sparse_training_modes, _dynamic_methods().register_with))
    dst_update_every: int = setting(100, "Steps between set/rigl mask updates.",
                                    POSITIVE_INT)
    dst_drop_fraction: float = setting(
        0.3, "Initial fraction of active weights a set/rigl update replaces "
        "(cosine decay to 0 at 75 % of training).",
        in_interval(0, 1, low_open=True))
    pruning_batches: int = setting(1, "Training batches the data-driven "
                                   "pruning methods (snip, grasp, egf) score "
                                   "on.", POSITIVE_INT)
    egf_points: int = setting(
        None, "Epochs at which EGF is measured on a fixed batch set, spread "
        f"evenly (1..epochs; default: min({DEFAULT_EGF_POINTS}, epochs)).",
        POSITIVE_INT, Relation(("epochs",), _egf_points_within_epochs))
    egf_batches: int = setting(4, "Batches in the fixed EGF batch set.",
                               POSITIVE_INT)
    egf_data: str = setting("train", "Data of the fixed EGF batch set.",
                            one_of(EGF_DATA))
    gradient_flow_every: int = setting(
        DEFAULT_GRADIENT_FLOW_EVERY, "Per-step gf/EGF (History, TensorBoard "
        "epoch_* scalars) on each epoch's steps 0, N, 2N, ... (1 = every "
        "step). The fixed-batch EGF points (--egf_points) are not affected.",
        POSITIVE_INT)
    data_dir: str = setting(None, "tensorflow-datasets data_dir.")
    jit_compile: bool = setting(False, "Compile training steps with XLA.")
    models: str = setting("both", "Models to train.", one_of(MODEL_CHOICES))

    def validate(self):
        """Checks every setting against its rule, then the settings checked
        together (`Relation`s); raises `SettingError` (a ValueError) naming
        the first bad setting and its value. Fills egf_points's default and
        parses the regularisers. Returns self."""
        self._fill_defaults()
        for field in fields():
            rule = field.metadata["rule"]
            if rule is not None:
                value = check_setting(field.name, rule.check, field.name,
                                      getattr(self, field.name))
                if rule.stores:
                    setattr(self, field.name, value)
        for field in fields():
            relation = field.metadata["relation"]
            if relation is not None:
                check_setting(field.name, relation.check, self)
        return self

    def _fill_defaults(self):
        """egf_points: min(DEFAULT_EGF_POINTS, epochs) when not given (and
        epochs is valid; if not, its check names it)."""
        e = self.epochs
        if self.egf_points is None and validation.is_int(e) and e >= 1:
            self.egf_points = min(DEFAULT_EGF_POINTS, int(e))

    def _regularizer_names(self):
        return parse_regularizers(self.regularizers)

    @property
    def batch_norm(self):
        """Whether the models have BatchNorm (regulariser bn)."""
        return "bn" in self._regularizer_names()

    @property
    def skip_connections(self):
        """Whether the MLPs have skip connections (regulariser sc)."""
        return "sc" in self._regularizer_names()

    @property
    def augmentation(self):
        """Whether training batches are augmented (regulariser da)."""
        return "da" in self._regularizer_names()

    @property
    def l2_factor(self):
        """The kernels' L2 factor: weight_decay with regulariser l2, else 0."""
        return self.weight_decay if "l2" in self._regularizer_names() else 0.0

    @property
    def model_names(self):
        """The models the run trains, in order: ("sparse", "dense") for
        models="both", else (models,)."""
        return ("sparse", "dense") if self.models == "both" else (self.models,)

    @property
    def skip_without_effect(self):
        """Whether sc is asked for where it adds nothing: skip connections
        join equal-width hidden layers, so a 1-hidden-layer MLP has none and
        the run equals the one without sc (the grid leaves such points out;
        a run warns)."""
        return self.skip_connections and self.arch == "mlp" and self.depth == 1

    def dense_widths(self):
        """The dense network's widths: an MLP's hidden widths, a convnet's
        channels (keras_egf.architectures)."""
        return ARCHITECTURES.get(self.arch).dense_widths(
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
# The settings `validate`'s Relations read, with the settings they check:
# every other check reads one setting. `keras_egf.grid` validates a grid's
# axes one value at a time and only the combinations of these together.
COMBINED_CHECKS = tuple(dict.fromkeys(
    name for f in fields() if f.metadata["relation"] is not None
    for name in (f.name, *f.metadata["relation"].reads)))
