"""Masks on any prunable weight of any Keras 3 layer.

`masked_class(cls)` gives the masked version of a layer class: the same
class (same constructor, config, `call`, attributes) plus one
non-trainable 0/1 mask variable per prunable weight (`keras_egf.prunable`
says which) and pruning options in its config. Its forward pass reads each
masked weight as weight * mask, through a `keras.StatelessScope` that maps
the variable to that product, so the layer's own `call` runs unchanged,
whatever reads the weight (a property such as `Dense.kernel`, an RNN cell
inside a scan, an attention projection). Written in `keras.ops` only.

`MaskedDense` and `MaskedConv2D` (keras_egf.layers) are the masked
versions of `Dense` and `Conv2D`; every other class gets a generated
subclass named `Masked<Class>`, registered for saving under
`keras_egf>Masked<Class>` (built-in classes at import, custom ones when
first masked, or by `keras_egf.pruning.prune_scope`).

`prunable_weights(model)` lists, in order, one entry per prunable weight
tensor of a model (nested models included): the layer itself for
MaskedDense/MaskedConv2D and plain Dense/Conv2D (`.kernel`, `.mask`), a
`WeightMask` otherwise (`.name`, `.kernel`, `.mask`, `.set_mask`, ...).
Gradient flow, pruning and dynamic sparse training all run over it.
"""

import functools

import keras
import numpy as np
# No public equivalent: the StatelessScope in force, if any.
from keras.src.backend.common.stateless_scope import get_stateless_scope

from keras_egf import layers as layers_lib
from keras_egf import prunable as prunable_lib
from keras_egf._warnings import warn
from keras_egf.pruning_options import PruningOptionsMixin



def masked_value(variable, mask, mode):
    """The value a masked weight is read as in the forward pass."""
    return layers_lib.mask_product(variable.value, mask, mode)


class MaskedWeightsMixin(PruningOptionsMixin):
    """Base of the generated `Masked<Class>` layers (see module doc)."""

    def _build_masks(self):
        variables = prunable_lib.prunable_variables(self, building=True)
        self._check_block_rank(variables)
        names = [layers_lib.relative_path(self, v).replace("/", "_")
                 for v in variables]
        masks = [self.add_weight(name=f"{n}_mask", shape=tuple(v.shape),
                                 initializer="ones", trainable=False,
                                 dtype=self.mask_dtype)
                 for n, v in zip(names, variables)]
        # Not tracked a second time (add_weight tracked the masks).
        object.__setattr__(self, "_weight_masks", masks)

    def weight_masks(self):
        """[WeightMask] of this layer, in order."""
        variables = prunable_lib.prunable_variables(self) if self.built else []
        masks = getattr(self, "_weight_masks", [])
        return [layers_lib.WeightMask(
            layers_lib.weight_key(self, v, len(variables)), self, v, m)
            for v, m in zip(variables, masks)]

    def get_config(self):
        return self._pruning_config(super().get_config())

    def _masked_call(self, base_call, *args, **kwargs):
        mode = layers_lib.current_mask_product_mode()
        entries = self.weight_masks()
        if mode == layers_lib.MASK_PRODUCT_IDENTITY or not entries:
            return base_call(self, *args, **kwargs)
        mapping = [(e.kernel, masked_value(e.kernel, e.mask, mode))
                   for e in entries]
        mapped = {id(e.kernel) for e in entries}
        # A StatelessScope does not look values up in an enclosing one
        # (JAX's stateless steps, the gradient helpers): hand it that
        # scope's values of the layer's other variables (biases, ...).
        inherited = {}
        outer = get_stateless_scope()
        if outer is not None:
            for variable in self.variables:
                value = outer.get_current_value(variable)
                if id(variable) not in mapped and value is not None:
                    inherited[id(variable)] = value
                    mapping.append((variable, value))
        with keras.StatelessScope(state_mapping=mapping,
                                  collect_losses=True) as scope:
            outputs = base_call(self, *args, **kwargs)
        # Hand on what the call changed (RNN states, seed generators,
        # activity losses) to the enclosing scope or the variables.
        for variable in self.variables:
            if id(variable) not in mapped:
                value = scope.get_current_value(variable)
                if value is not None and value is not inherited.get(
                        id(variable)):
                    variable.assign(value)
        for loss in scope.losses:
            self.add_loss(loss)
        return outputs


def mask_in_place(layer, options):
    """Turns `layer` itself into its masked class (for custom layers a
    config cannot rebuild), masks all ones; returns it."""
    layer.__class__ = masked_class(type(layer))
    layer._set_pruning_options(**options)
    if layer.built:
        tracker = layer._tracker  # Keras locks a layer's state after build
        locked = tracker.locked
        tracker.unlock()
        try:
            layer._build_masks()
        finally:
            if locked:
                tracker.lock()
    return layer


_MASKED_CLASSES = {}


def masked_class(layer_class):
    """The masked version of `layer_class` (generated once, registered for
    saving as `keras_egf>Masked<Class>`)."""
    if layer_class in _MASKED_CLASSES:
        return _MASKED_CLASSES[layer_class]
    if issubclass(layer_class, (MaskedWeightsMixin, layers_lib.MaskedKernelMixin)):
        return layer_class
    fixed = {keras.layers.Dense: layers_lib.MaskedDense,
             keras.layers.Conv2D: layers_lib.MaskedConv2D}
    if layer_class in fixed:
        return fixed[layer_class]
    base_build, base_call = layer_class.build, layer_class.call

    @functools.wraps(base_build)
    def build(self, *args, **kwargs):
        base_build(self, *args, **kwargs)
        self._build_masks()

    @functools.wraps(base_call)
    def call(self, *args, **kwargs):
        return self._masked_call(base_call, *args, **kwargs)

    name = f"Masked{layer_class.__name__}"
    new = type(name, (MaskedWeightsMixin, layer_class), {
        "build": build, "call": call, "__module__": __name__,
        "_plain_class": layer_class,
        "__doc__": f"`{layer_class.__name__}` with 0/1 masks on its prunable "
                   "weights (keras_egf.masking)."})
    keras.saving.register_keras_serializable(package="keras_egf",
                                             name=name)(new)
    keras.saving.get_custom_objects()[name] = new  # .h5 looks up plain names
    _MASKED_CLASSES[layer_class] = new
    return new


def plain_class(layer_class):
    """The unmasked class a masked class was made from."""
    if issubclass(layer_class, MaskedWeightsMixin):
        return layer_class._plain_class
    return {layers_lib.MaskedDense: keras.layers.Dense,
            layers_lib.MaskedConv2D: keras.layers.Conv2D}.get(
                layer_class, layer_class)


def is_masked(layer):
    """True for layers carrying masks (masked versions of any class)."""
    return is_masked_class(type(layer))


def is_masked_class(layer_class):
    """True for masked layer classes (MaskedDense, Masked<Class>, ...)."""
    return issubclass(layer_class,
                      (MaskedWeightsMixin, layers_lib.MaskedKernelMixin))


def is_mask_variable(layer, variable):
    """True if `variable` is one of `layer`'s mask variables."""
    if isinstance(layer, layers_lib.MaskedKernelMixin):
        return variable is layer.mask
    return any(variable is m for m in getattr(layer, "_weight_masks", []))


def unprunable_layers(model):
    """Leaf layers of `model` holding weights keras-egf cannot prune."""
    return [l for l in layers_lib.model_layers(model)
            if not is_masked(l) and not prunable_lib.supports(l)]


def warn_left_dense(model, layers, context):
    """One warning naming every layer with weights left dense."""
    if layers:
        described = ", ".join(f"{l.name!r} ({type(l).__name__}, "
                              f"{sum(int(np.prod(w.shape)) for w in l.weights)} "
                              "weights)" for l in layers)
        warn(f"{context}: {len(layers)} layer(s) of model "
             f"{model.name!r} left dense, their weights cannot be "
             f"pruned: {described}.")


# Built-in classes are made (and registered) at import, so pruned models
# load after `import keras_egf`.
for _cls in list(prunable_lib._REGISTRY) + [keras.layers.SimpleRNN,
                                            keras.layers.GRU,
                                            keras.layers.LSTM,
                                            keras.layers.RNN]:
    masked_class(_cls)
