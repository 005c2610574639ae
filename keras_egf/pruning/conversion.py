"""From Keras 3 models to pruned ones and back, as TFMOT's
`prune_low_magnitude` and `strip_pruning` do for tf-keras.

Supported layers: `keras.layers.Dense` -> `MaskedDense` and
`keras.layers.Conv2D` -> `MaskedConv2D` (same config, same weights, mask all
ones until the first update). Other layers are kept as they are.
"""

import keras

from keras_egf import layers as layers_lib
from keras_egf.model import MaskedModel
from keras_egf.pruning import schedules as schedules_lib

_TO_MASKED = {keras.layers.Dense: layers_lib.MaskedDense,
              keras.layers.Conv2D: layers_lib.MaskedConv2D}
_TO_PLAIN = {layers_lib.MaskedDense: keras.layers.Dense,
             layers_lib.MaskedConv2D: keras.layers.Conv2D}


def _clone(model, target_class, weights_of):
    """Clones `model` layer by layer: `target_class(layer)` gives the class
    to rebuild a layer as (from its config), `weights_of(old, new)` its
    weights."""
    if not isinstance(model, keras.Model):
        raise ValueError("Expected a Keras 3 Sequential or functional model. "
                         f"Received: {type(model).__name__}")

    def clone_layer(layer):
        return target_class(layer).from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    for old, new in zip(model.layers, clone.layers):
        if old.weights:
            new.set_weights(weights_of(old, new))
    return clone


def prune_low_magnitude(to_prune, pruning_schedule=None, exclude=()):
    """A MaskedModel whose Dense/Conv2D layers are masked, weights kept.

    Args:
        to_prune: a Keras 3 Sequential or functional model.
        pruning_schedule: ConstantSparsity / PolynomialDecay (keras-egf's or
            TFMOT's); `UpdatePruningStep` applies it during `fit`. Default:
            ConstantSparsity(0.5, begin_step=0), as TFMOT's default.
        exclude: names of Dense/Conv2D layers to leave unmasked.
    """
    schedule = schedules_lib.as_schedule(
        pruning_schedule or schedules_lib.ConstantSparsity(0.5, 0))
    exclude = {exclude} if isinstance(exclude, str) else set(exclude)
    unknown = exclude - {l.name for l in getattr(to_prune, "layers", [])}
    if unknown:
        raise ValueError(f"exclude names layers not in the model: {sorted(unknown)}")

    def target_class(layer):
        if layer.name in exclude:
            return type(layer)
        return _TO_MASKED.get(type(layer), type(layer))

    def weights_of(old, new):
        values = old.get_weights()
        if layers_lib.is_masked_layer(new):
            values.append(new.mask.numpy())  # kernel, bias, then the mask
        return values

    model = MaskedModel.wrap(_clone(to_prune, target_class, weights_of))
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
