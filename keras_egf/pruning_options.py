"""Pruning options a masked layer carries in its config (and so saves):
how its masks are stored, its gradual-pruning schedule, and M-by-N or
block structure of its masks (TFMOT's `sparsity_m_by_n`, `block_size`,
`block_pooling_type`)."""

import keras

from keras_egf import validation

# Storage of a mask variable: one byte an entry by default (a quarter of a
# float32 kernel's bytes), cast to the weight's dtype where it is used.
MASK_DTYPES = ("int8", "float32")
DEFAULT_MASK_DTYPE = "int8"

BLOCK_POOLING_TYPES = ("AVG", "MAX")
PRUNING_OPTIONS = ("mask_dtype", "pruning_schedule", "sparsity_m_by_n",
                   "block_size", "block_pooling_type")


def check_m_by_n(sparsity_m_by_n):
    """(m, n) with 0 < m < n integers (m zeros in every n), or None."""
    if sparsity_m_by_n is None:
        return None
    try:
        m, n = (int(v) for v in sparsity_m_by_n)
        ok = (len(tuple(sparsity_m_by_n)) == 2 and 0 < m < n and all(
            not isinstance(v, bool) and float(v) == int(v)
            for v in sparsity_m_by_n))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        validation.fail("sparsity_m_by_n", "a pair (m, n) of integers with "
                        "0 < m < n (m zeros in every n)", sparsity_m_by_n)
    return (m, n)


def check_block(block_size, block_pooling_type):
    """Validated (block_size as a (rows, cols) tuple, pooling type)."""
    try:
        block = tuple(int(v) for v in block_size)
        ok = len(block) == 2 and min(block) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        validation.fail("block_size", "a pair of integers >= 1", block_size)
    validation.one_of("block_pooling_type", block_pooling_type,
                      BLOCK_POOLING_TYPES)
    return block, block_pooling_type


class PruningOptionsMixin:
    """Pruning options a masked layer carries in its config: mask storage,
    its gradual schedule, M-by-N and block structure.

    Its `__init__` takes the options as keywords and passes every other
    argument on to the Keras layer, so a masked layer is called like the
    layer it masks (`MaskedDense(10, "relu", mask_dtype="float32")`).
    """

    def __init__(self, *args, mask_dtype=DEFAULT_MASK_DTYPE,
                 pruning_schedule=None, sparsity_m_by_n=None,
                 block_size=(1, 1), block_pooling_type="AVG", **kwargs):
        self._check_plain_kernel(kwargs)
        self._set_pruning_options(mask_dtype, pruning_schedule,
                                  sparsity_m_by_n, block_size,
                                  block_pooling_type)
        super().__init__(*args, **kwargs)

    def _set_pruning_options(self, mask_dtype=DEFAULT_MASK_DTYPE,
                             pruning_schedule=None, sparsity_m_by_n=None,
                             block_size=(1, 1), block_pooling_type="AVG"):
        # keras_egf.pruning imports the masked layers, which import this
        # module: imported when used.
        from keras_egf.pruning import schedules as schedules_lib

        self.mask_dtype = validation.one_of("mask_dtype", mask_dtype, MASK_DTYPES)
        self.pruning_schedule = schedules_lib.deserialize_schedule(
            pruning_schedule)
        self.sparsity_m_by_n = check_m_by_n(sparsity_m_by_n)
        self.block_size, self.block_pooling_type = check_block(
            block_size, block_pooling_type)

    def _check_block_rank(self, variables):
        """Block sparsity needs 2-D weights (TFMOT's rule)."""
        if tuple(self.block_size) == (1, 1):
            return
        bad = [(v.path, tuple(v.shape)) for v in variables if len(v.shape) != 2]
        if bad:
            raise ValueError(
                "Block sparsity can only be used for layers which have "
                f"2-dimensional weights; layer {self.name!r} has {bad}. "
                f"Received: block_size={tuple(self.block_size)}")

    def _check_plain_kernel(self, kwargs):
        """Masks need the plain weights: no LoRA, no quantization."""
        for name in ("lora_rank", "quantization_config"):
            if kwargs.get(name) is not None:
                raise ValueError(
                    f"{type(self).__name__} does not support `{name}`. "
                    f"Received: {name}={kwargs[name]!r}")

    # Dense, EinsumDense, Embedding (and Conv) save their variables through
    # a quantization-aware spec that knows nothing of masks: use the plain
    # Layer behaviour, which saves every own variable (masks too) in order.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def quantize(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} cannot be quantized.")

    def _pruning_config(self, config):
        # keras_egf.pruning imports the masked layers, which import this
        # module: imported when used.
        from keras_egf.pruning import schedules as schedules_lib

        config["mask_dtype"] = self.mask_dtype
        if self.pruning_schedule is not None:
            config["pruning_schedule"] = schedules_lib.serialize_schedule(
                self.pruning_schedule)
        if self.sparsity_m_by_n is not None:
            config["sparsity_m_by_n"] = list(self.sparsity_m_by_n)
        if self.block_size != (1, 1) or self.block_pooling_type != "AVG":
            config["block_size"] = list(self.block_size)
            config["block_pooling_type"] = self.block_pooling_type
        return config


