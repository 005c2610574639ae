"""From Keras 3 models to pruned ones and back, as TFMOT's
`prune_low_magnitude` and `strip_pruning` do for tf-keras.

Every layer `keras_egf.prunable` knows is converted to its masked version
(`keras_egf.masking.masked_class`: same class, config, name and weights,
masks all ones until the first update): Dense, EinsumDense, Conv1D/2D/3D
and their transposes, Separable and Depthwise convolutions, Embedding,
SimpleRNN/GRU/LSTM and RNN over their cells, MultiHeadAttention, custom
`PrunableLayer`s and subclasses of all these, inside nested models too.
Weightless and normalisation layers are kept as they are; a layer holding
weights keras-egf cannot prune is refused when pruned alone and, inside a
model, left dense with one warning that names every such layer.
"""

import contextlib

import keras
from keras import tree

from keras_egf import layers as layers_lib
from keras_egf import masking
from keras_egf import prunable as prunable_lib
from keras_egf.model import MaskedModel
from keras_egf.pruning import schedules as schedules_lib


def _copy_weights(old, new):
    """Copies `old`'s variables into `new` (same class, or its masked or
    plain version): masks copied where both have them, else all ones."""
    old_masks = {id(v) for v in old.weights if masking.is_mask_variable(old, v)}
    source = [v for v in old.weights if id(v) not in old_masks]
    target = [v for v in new.weights if not masking.is_mask_variable(new, v)]
    if len(source) != len(target):
        raise ValueError(f"Cannot copy the weights of layer {old.name!r} "
                         f"({len(source)} variables) into {new.name!r} "
                         f"({len(target)} variables).")
    # Copies, not the same array: on JAX, a jitted step donates (deletes)
    # the arrays of the model it runs, which the other model would share.
    for s, t in zip(source, target):
        t.assign(keras.ops.copy(s.value))
    if masking.is_masked(old) and masking.is_masked(new):
        for s, t in zip(_mask_variables(old), _mask_variables(new)):
            t.assign(keras.ops.copy(s.value))


def _mask_variables(layer):
    if isinstance(layer, layers_lib.MaskedKernelMixin):
        return [layer.mask]
    return list(getattr(layer, "_weight_masks", []))


def _rebuild(layer, cls, options=None):
    """`layer` rebuilt as `cls` from its (plain) config plus `options`,
    built like it if it was, weights copied; a custom masked layer whose
    config cannot rebuild it (an `__init__` without `**kwargs`) is
    converted in place (TFMOT's wrapper, too, prunes the instance)."""
    config = layers_lib.plain_config(layer)
    if options:
        config.update(options)
    try:
        new = cls.from_config(config)
    except TypeError:
        if not masking.is_masked_class(cls) or _is_keras_class(type(layer)):
            raise
        return masking.mask_in_place(layer, options or {})
    if getattr(layer, "_input_shape_arg", None) is not None:
        new._input_shape_arg = layer._input_shape_arg  # Sequential's Input
    if layer.built and layer.get_build_config():
        new.build_from_config(layer.get_build_config())
        _copy_weights(layer, new)
    return new


def _is_keras_class(cls):
    return cls.__module__.startswith("keras.")


def _kept(layer):
    """A layer prune_low_magnitude does not prune, in the pruned model: a
    fresh copy with its weights, or, where its config cannot rebuild it
    (custom layers whose weights appear on first call, or without
    `**kwargs`), the layer itself, shared (as TFMOT does)."""
    try:
        return _rebuild(layer, type(layer))
    except (TypeError, ValueError):
        if _is_keras_class(type(layer)):
            raise
        return layer


def _options(layer, params):
    """Pruning options for a masked layer: the given ones, else the ones
    an already pruned layer carries."""
    options = {}
    for name, value in params.items():
        if value is None and masking.is_masked(layer):
            value = getattr(layer, name)
        if value is not None:
            options[name] = value
    if options.get("pruning_schedule") is not None:
        options["pruning_schedule"] = schedules_lib.as_schedule(
            options["pruning_schedule"])
    return options


def _prune_layer(layer, params):
    """The masked version of one layer (pruned layers reused)."""
    if not prunable_lib.supports(layer) and not masking.is_masked(layer):
        raise ValueError(
            f"prune_low_magnitude cannot prune {prunable_lib.unsupported_reason(layer)}."
            f" Received: layer {layer.name!r} of type {type(layer).__name__}")
    if isinstance(layer, keras.layers.InputLayer) or (
            not masking.is_masked(layer)
            and prunable_lib.is_weightless_or_normalization(layer)):
        return layer
    options = _options(layer, params)
    if masking.is_masked(layer):
        for name, value in options.items():  # reuse: only the options change
            if name != "mask_dtype" and value is not None:
                setattr(layer, name, value)
        return layer
    return _rebuild(layer, masking.masked_class(type(layer)), options)


def _check_params(params):
    from keras_egf.pruning_options import check_block, check_m_by_n

    check_m_by_n(params["sparsity_m_by_n"])
    check_block(params["block_size"] or (1, 1),
                params["block_pooling_type"] or "AVG")
    if params["sparsity_m_by_n"] is not None and (
            tuple(params["block_size"] or (1, 1)) != (1, 1)):
        raise ValueError("sparsity_m_by_n and block_size cannot be combined. "
                         f"Received: sparsity_m_by_n="
                         f"{params['sparsity_m_by_n']!r}, block_size="
                         f"{params['block_size']!r}")


def prune_low_magnitude(to_prune, pruning_schedule=None, block_size=None,
                        block_pooling_type=None, sparsity_m_by_n=None,
                        exclude=(), mask_dtype=None, pruning_policy=None):
    """Masked versions of every prunable layer, weights kept (TFMOT's
    `prune_low_magnitude`).

    Args:
        to_prune: a Keras 3 Sequential or functional model (returns a
            `MaskedModel` with the same inputs and outputs structure), a
            layer (returns its masked version, to build a model with; train
            it with `keras_egf.MaskedModel` for masked gradients and
            gf/EGF), or a list of layers (returns a list). A built layer
            keeps its weights; an already pruned layer or model is reused
            (its masks kept, the options given here replacing its own).
        pruning_schedule: ConstantSparsity / PolynomialDecay (keras-egf's or
            TFMOT's), saved with each pruned layer; `UpdatePruningStep`
            applies it during `fit`. Default: ConstantSparsity(0.5,
            begin_step=0), as TFMOT's.
        block_size: (rows, cols) of blocks pruned together (2-D weights),
            ranked by their `block_pooling_type` ("AVG" or "MAX") of |w|.
        sparsity_m_by_n: (m, n): m zeros in every n consecutive weights
            along the input dimension (TFMOT's layout), e.g. (2, 4); set at
            the first pruning step, then kept.
        exclude: names of a model's layers to leave unpruned.
        mask_dtype: storage of the masks, "int8" (default) or "float32".
        pruning_policy: optional callable `policy(layer) -> bool`; layers it
            refuses stay unpruned.
    """
    if isinstance(to_prune, keras.layers.Layer) and not isinstance(
            to_prune, keras.Model) or isinstance(to_prune, (list, tuple)):
        default = None if (not isinstance(to_prune, (list, tuple))
                           and masking.is_masked(to_prune)) else \
            schedules_lib.ConstantSparsity(0.5, 0)
    else:
        default = None if isinstance(to_prune, MaskedModel) else \
            schedules_lib.ConstantSparsity(0.5, 0)
    params = {"pruning_schedule": pruning_schedule or default,
              "block_size": block_size, "block_pooling_type": block_pooling_type,
              "sparsity_m_by_n": sparsity_m_by_n, "mask_dtype": mask_dtype}
    _check_params(params)
    if isinstance(to_prune, (list, tuple)):
        return [_prune_layer(layer, params) for layer in to_prune]
    if isinstance(to_prune, keras.layers.Layer) and not isinstance(
            to_prune, keras.Model):
        return _prune_layer(to_prune, params)
    return _prune_model(to_prune, params, exclude, pruning_policy,
                        "prune_low_magnitude")


def masked_copy(model, mask_dtype=None):
    """`model` with every prunable layer masked (all ones) and no pruning
    schedule: what pruning from scratch (`keras_egf.prune`) starts from."""
    params = {"pruning_schedule": None, "block_size": None,
              "block_pooling_type": None, "sparsity_m_by_n": None,
              "mask_dtype": mask_dtype}
    return _prune_model(model, params, (), None, "prune")


def _prune_model(to_prune, params, exclude, pruning_policy, caller):
    model = _check_model(to_prune, "prune_low_magnitude")
    exclude = {exclude} if isinstance(exclude, str) else set(exclude or ())
    names = {l.name for l in layers_lib.model_layers(model)}
    unknown = exclude - names
    if unknown:
        raise ValueError(f"exclude names layers not in model {model.name!r}: "
                         f"{sorted(unknown)}")
    left_dense = []

    def convert(layer):
        if (layer.name in exclude or isinstance(layer, keras.layers.InputLayer)
                or (pruning_policy is not None and not pruning_policy(layer))):
            return _kept(layer)
        if not prunable_lib.supports(layer) and not masking.is_masked(layer):
            left_dense.append(layer)
            return _kept(layer)
        if prunable_lib.is_weightless_or_normalization(layer):
            return _kept(layer)
        options = _options(layer, params)
        return _rebuild(layer, masking.masked_class(type(layer)), options)

    clone = _clone(model, convert)
    masking.warn_left_dense(model, left_dense, caller)
    if isinstance(clone, keras.Sequential) and not _has_inputs(clone):
        # An unbuilt Sequential (no Input yet) stays one, as in TFMOT: its
        # masked layers train as they are; MaskedModel.wrap(model) once
        # built adds masked gradients and gf/EGF.
        return clone
    pruned = MaskedModel.wrap(clone, **_model_options(model))
    pruned.source_model_class = _source_class(model)
    return pruned


def _has_inputs(model):
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False


def _model_options(model):
    if isinstance(model, MaskedModel):
        return {"track_gradient_flow": model.track_gradient_flow,
                "mask_product": model.mask_product,
                "gradient_flow_every": model.gradient_flow_every}
    return {}


def _source_class(model):
    if isinstance(model, MaskedModel):
        return model.source_model_class
    return "Sequential" if isinstance(model, keras.Sequential) else "Functional"


def _check_model(model, what):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`{what}` can only take a keras.Sequential or functional model, "
            "a keras.layers.Layer or a list of layers. Received an object of "
            f"type {type(model).__name__}")
    if not isinstance(model, keras.Sequential) and not getattr(
            model, "_is_graph_network", hasattr(model, "_operations")):
        raise ValueError(f"`{what}`: subclassed models are not supported "
                         f"(model {model.name!r}); build it functionally or "
                         "prune its layers one by one.")
    return model


def _clone(model, convert):
    """Clones `model` (nested Sequential/functional models too), each leaf
    layer through `convert(layer)` (which copies its weights); a
    functional model's inputs keep their InputLayers' names."""
    input_tensors = None
    if not isinstance(model, keras.Sequential) and hasattr(model, "_inputs_struct"):
        input_tensors = tree.map_structure(
            lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype,
                                  sparse=t.sparse,
                                  name=t._keras_history.operation.name),
            model._inputs_struct)
    return keras.models.clone_model(model, input_tensors=input_tensors,
                                    clone_function=convert, recursive=True)


def strip_pruning(model):
    """A plain Keras 3 model of `model`'s class (Sequential or functional,
    as it was before pruning), same layer names and configs, no mask
    variables, weights holding weight * mask: loads and serves without
    keras_egf."""
    _check_model(model, "strip_pruning")

    def convert(layer):
        if not masking.is_masked(layer):
            return _kept(layer)
        try:
            new = _rebuild(layer, masking.plain_class(type(layer)))
        except TypeError as e:
            raise ValueError(
                f"strip_pruning cannot rebuild layer {layer.name!r} of type "
                f"{masking.plain_class(type(layer)).__name__} from its config "
                f"({e}); give its __init__ **kwargs (Keras passes name, "
                "trainable, dtype).") from None
        _zero_pruned(layer, new)
        return new

    clone = _clone(model, convert)
    if not isinstance(clone, MaskedModel):
        return clone
    if _source_class(model) == "Sequential" and len(clone.inputs) == 1:
        first = clone.inputs[0]
        return keras.Sequential(
            [keras.Input(batch_shape=first.shape, dtype=first.dtype,
                         name=first.name)]
            + [l for l in clone.layers
               if not isinstance(l, keras.layers.InputLayer)],
            name=model.name)
    return keras.Model(clone.input, clone.output, name=model.name)


def _zero_pruned(masked, plain):
    """Zeroes the pruned entries of the plain layer's weights (they pair
    with the masked layer's non-mask weights in order, as `_copy_weights`
    copied them)."""
    if not masked.built:
        return  # nothing to zero yet
    masks = {id(e.kernel): e.mask for e in layers_lib.layer_entries(masked)}
    source = [v for v in masked.weights if not masking.is_mask_variable(masked, v)]
    for old, new in zip(source, plain.weights):
        mask = masks.get(id(old))
        if mask is not None:
            new.assign(layers_lib.zero_where_pruned(new, mask))


@contextlib.contextmanager
def prune_scope():
    """TFMOT's `prune_scope`, for loading pruned models: registers the
    masked version of every registered custom `PrunableLayer` class (and
    of custom subclasses of prunable layers), so their pruned models load.
    Built-in layers need nothing: `import keras_egf` registers them."""
    for cls in list(keras.saving.get_custom_objects().values()):
        if (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)
                and not masking.is_masked_class(cls)
                and (hasattr(cls, "get_prunable_weights")
                     or prunable_lib.registered_class_paths(cls))):
            masking.masked_class(cls)
    yield
