"""Which grid points can train as one pack, and the packs of a grid.

Points that share every setting but `MEMBER_FIELDS` (their `pack_key`) and
that packing supports (`check_packable`) can be trained together; a sweep
with `pack` > 1 trains each pack of `group_points` as one trial.
"""

from keras_egf import validation

PACKABLE_ACTIVATIONS = ("relu", "prelu", "elu", "swish", "sigmoid")
# Settings the members of a pack may differ in; all others are shared.
MEMBER_FIELDS = ("seed", "learning_rate", "dense_width", "sparse_width",
                 "sparse_width_multiplier")


def pack_key(config):
    """What members of one pack share: every setting but MEMBER_FIELDS."""
    return tuple(sorted((k, repr(v)) for k, v in config.to_dict().items()
                        if k not in MEMBER_FIELDS))


def check_packable(config):
    """Raises ValueError naming the setting that packing does not support."""
    if config.arch != "mlp":
        validation.fail("arch", "'mlp' to pack (packing trains MLPs only)",
                        config.arch)
    if config.activation not in PACKABLE_ACTIVATIONS:
        validation.fail(
            "activation", f"one of {list(PACKABLE_ACTIVATIONS)} to pack "
            "(SReLU's parameters are per unit, not per member)", config.activation)
    if config.sparse_training != "static":
        validation.fail("sparse_training", "'static' to pack (packing keeps "
                        "masks fixed)", config.sparse_training)


def is_packable(config):
    """True when `check_packable` accepts `config`."""
    try:
        check_packable(config)
    except ValueError:
        return False
    return True


def check_one_pack(configs):
    """Raises ValueError unless `configs` (at least one) share a `pack_key`,
    naming the settings they differ in."""
    if not configs:
        validation.fail("configs", "a non-empty list of one pack's configs",
                        configs)
    first = configs[0].to_dict()
    differing = sorted({k for c in configs[1:] for k, v in c.to_dict().items()
                        if k not in MEMBER_FIELDS and repr(v) != repr(first.get(k))})
    if differing:
        raise ValueError(f"`configs` must differ only in {list(MEMBER_FIELDS)} "
                         "(the members of one pack share every other setting). "
                         f"Received: configs differing in {differing}")


def group_points(points, config_of, size):
    """Grid points in packs of at most `size` sharing a `pack_key`, in grid
    order (a pack is ordered by its first point); a point packing does not
    support (`check_packable`) is a pack of its own."""
    size = validation.positive_int("size", size)
    open_groups, groups = {}, []
    for point in points:
        config = config_of(point)
        if not is_packable(config):
            groups.append([point])
            continue
        key = pack_key(config)
        group = open_groups.get(key)
        if group is None or len(group) == size:
            group = open_groups[key] = []
            groups.append(group)
        group.append(point)
    return groups
