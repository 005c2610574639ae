"""From Keras 3 models to pruned ones and back, as TFMOT's
`prune_low_magnitude` and `strip_pruning` do for tf-keras.

Supported layers: `keras.layers.Dense` -> `MaskedDense` and
`keras.layers.Conv2D` -> `MaskedConv2D` (same config, same weights, mask all
ones until the first update). In a model, other layers are kept as they are;
a single layer of another kind is refused by name. Conv1D, Conv3D,
DepthwiseConv2D and SeparableConv2D have no masked version yet.
"""

import keras

from keras_egf import layers as layers_lib
from keras_egf.model import MaskedModel
from keras_egf.pruning import schedules as schedules_lib

_TO_MASKED = {keras.layers.Dense: layers_lib.MaskedDense,
              keras.layers.Conv2D: layers_lib.MaskedConv2D}
_TO_PLAIN = {layers_lib.MaskedDense: keras.layers.Dense,
             layers_lib.MaskedConv2D: keras.layers.Conv2D}


def _convert(layer, target_class, mask_dtype=None):
    """`layer` rebuilt as `target_class` from its config (mask options only
    for masked targets; `mask_dtype` if given), built like it if it was."""
    config = layers_lib.plain_config(layer)
    if issubclass(target_class, layers_lib.MaskedKernelMixin):
        config["mask_dtype"] = mask_dtype or getattr(
            layer, "mask_dtype", layers_lib.DEFAULT_MASK_DTYPE)
    new = target_class.from_config(config)
    if layer.built and layer.get_build_config():
        new.build_from_config(layer.get_build_config())
    return new


def _clone(model, target_class, weights_of, mask_dtype=None):
    """Clones `model` layer by layer: `target_class(layer)` gives the class
    to rebuild a layer as (from its config), `weights_of(old, new)` its
    weights."""
    if not isinstance(model, keras.Model):
        raise ValueError("Expected a Keras 3 Sequential or functional model. "
                         f"Received: {type(model).__name__}")
    clone = keras.models.clone_model(
        model, clone_function=lambda layer: _convert(
            layer, target_class(layer), mask_dtype))
    for old, new in zip(model.layers, clone.layers):
        if old.weights:
            new.set_weights(weights_of(old, new))
    return clone


def _masked_weights(old, new):
    values = old.get_weights()
    if layers_lib.is_masked_layer(new):
        values.append(new.mask.numpy())  # kernel, bias, then the mask
    return values


def _prune_layer(layer, schedule, mask_dtype):
    target = _TO_MASKED.get(type(layer))
    if target is None:
        raise ValueError(
            f"prune_low_magnitude supports {[c.__name__ for c in _TO_MASKED]} "
            f"layers (or a model holding them). Received: layer {layer.name!r} "
            f"of type {type(layer).__name__}")
    masked = _convert(layer, target, mask_dtype)
    if layer.built:
        masked.set_weights(_masked_weights(layer, masked))
    masked.pruning_schedule = schedule  # read by UpdatePruningStep
    return masked


def prune_low_magnitude(to_prune, pruning_schedule=None, exclude=(),
                        mask_dtype=layers_lib.DEFAULT_MASK_DTYPE):
    """Masked versions of Dense/Conv2D layers, weights kept.

    Args:
        to_prune: a Keras 3 Sequential or functional model (returns a
            MaskedModel), a Dense/Conv2D layer (returns its masked version,
            to build a model with; `keras_egf.MaskedModel` then trains it
            with masked gradients), or a list of such layers (returns a
            list). A built layer keeps its weights.
        pruning_schedule: ConstantSparsity / PolynomialDecay (keras-egf's or
            TFMOT's); `UpdatePruningStep` applies it during `fit`, per layer
            for layers pruned one by one. Default: ConstantSparsity(0.5,
            begin_step=0), as TFMOT's default.
        exclude: names of a model's Dense/Conv2D layers to leave unmasked.
        mask_dtype: storage of the masks, "int8" (default) or "float32"
            (see `keras_egf.MaskedDense`).
    """
    schedule = schedules_lib.as_schedule(
        pruning_schedule or schedules_lib.ConstantSparsity(0.5, 0))
    if isinstance(to_prune, (list, tuple)):
        return [_prune_layer(layer, schedule, mask_dtype) for layer in to_prune]
    if isinstance(to_prune, keras.layers.Layer) and not isinstance(
            to_prune, keras.Model):
        return _prune_layer(to_prune, schedule, mask_dtype)
    exclude = {exclude} if isinstance(exclude, str) else set(exclude)
    unknown = exclude - {l.name for l in getattr(to_prune, "layers", [])}
    if unknown:
        raise ValueError(f"exclude names layers not in the model: {sorted(unknown)}")

    def target_class(layer):
        if layer.name in exclude:
            return type(layer)
        return _TO_MASKED.get(type(layer), type(layer))

    model = MaskedModel.wrap(_clone(to_prune, target_class, _masked_weights,
                                    mask_dtype))
    model.pruning_schedule = schedule
    return model


def strip_pruning(model):
    """A plain Keras 3 model (Dense/Conv2D, no mask variables) whose kernels
    hold kernel * mask: loads and serves without keras_egf."""
    def weights_of(old, new):
        if layers_lib.is_masked_layer(old):
            values = [old.kernel.numpy() * old.mask.numpy()]
            if old.use_bias:
                values.append(old.bias.numpy())
            return values
        return old.get_weights()

    clone = _clone(model, lambda layer: _TO_PLAIN.get(type(layer), type(layer)),
                   weights_of)
    return keras.Model(clone.inputs, clone.outputs, name=model.name)
