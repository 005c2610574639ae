"""A pack's members and the packed model holding them.

Each member is one model of one grid point, built by the very code of an
unpacked run (`keras_egf.experiment`'s public building blocks: its
pipelines, its same-capacity pair, its fixed EGF batches, its compiled
optimizer), with the callbacks its run would have (`MemberLogs`). The
packed model is the member models' graph with every layer holding all
members (`packed_model`); `copy_in` writes the members' weights into it and
`member_weights` cuts one member's back out.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_egf import experiment
from keras_egf import layers as layers_lib
from keras_egf.packing.grouping import check_packable
from keras_egf.packing.layers import PackedDense
from keras_egf.packing.outputs import MemberLogs
from keras_egf.pruning import get_pruning_method


class Member:
    """One model of a pack: its point's config, role, model and pipelines,
    and its run's logs (`logs`: History, EGF points, TensorBoard)."""

    def __init__(self, index, point, config, name, model, datasets, egf_batches,
                 log_dir=None):
        self.index, self.point, self.config, self.name = index, point, config, name
        self.model, self.datasets, self.egf_batches = model, datasets, egf_batches
        self.logs = MemberLogs(model, config, egf_batches, log_dir)
        self.diverged = False
        self.diverged_epoch = self.reason = None

    @property
    def history(self):
        """{key: [value per epoch]}, as Keras's History holds it."""
        return self.logs.history

    @property
    def points(self):
        """The fixed-batch EGF points (`EGFCallback.points`)."""
        return self.logs.egf.points


def build_members(configs, log_dirs=None):
    """Builds every point's pair as an unpacked run would, seed by seed;
    `log_dirs`: each point's output folder (TensorBoard runs under
    `<dir>/tensorboard/<model>`), None for none."""
    members, shapes, egf_by_seed = [], None, {}
    for p, config in enumerate(configs):
        config.validate()
        check_packable(config)
        tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        if get_pruning_method(config.pruning).needs_data:
            ds = experiment.datasets_for(config)  # a fresh pipeline to score on
        else:  # only its shapes are read: the same for the whole pack
            ds = shapes = shapes or experiment.datasets_for(config)
        pair = experiment.build_pair(config, ds)
        keras.utils.set_random_seed(config.seed)
        train = experiment.training_datasets(config)
        if config.seed not in egf_by_seed:  # one fixed batch set per seed
            egf_by_seed[config.seed] = experiment.fixed_egf_batches(config)
        for name, model in experiment.models_of(config, pair):
            experiment.compile_model(model, config)  # its optimizer, as alone
            log_dir = (None if log_dirs is None else
                       os.path.join(log_dirs[p], "tensorboard", name))
            members.append(Member(len(members), p, config, name, model, train,
                                  egf_by_seed[config.seed], log_dir))
    return members


def _mirrored(layer, x, members, units):
    """`layer` of a member model applied to the packed tensor `x` (None for
    a layer packing cannot hold)."""
    if isinstance(layer, keras.layers.Dense):
        return PackedDense(members, units, use_bias=layer.use_bias,
                           kernel_regularizer=layer.kernel_regularizer,
                           name=layer.name)(x)
    if isinstance(layer, keras.layers.BatchNormalization):
        # statistics per member and unit: K * units features
        width = int(x.shape[-1])
        x = keras.layers.Reshape((members * width,))(x)
        x = layer.__class__.from_config(layer.get_config())(x)
        return keras.layers.Reshape((members, width))(x)
    if isinstance(layer, (keras.layers.Activation, keras.layers.PReLU,
                          keras.layers.Add)):  # elementwise: member axis kept
        return layer.__class__.from_config(layer.get_config())(x)
    return None


def packed_model(members):
    """The packed model of `members`: the first member model's graph (its
    layer names included) with each layer holding all K members, each Dense
    layer a `PackedDense` as wide as its widest member."""
    model = members[0].model
    units = {l.name: max(int(m.model.get_layer(l.name).units) for m in members)
             for l in layers_lib.prunable_layers(model)}
    inputs = keras.Input(shape=(len(members),) + tuple(model.inputs[0].shape[1:]),
                         name=model.inputs[0].name)
    tensors = {id(model.inputs[0]): inputs}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = keras.tree.map_structure(lambda t: tensors[id(t)], layer.input)
        y = _mirrored(layer, x, len(members), units.get(layer.name))
        if y is None:
            raise ValueError(
                f"packing cannot hold layer {layer.name!r} "
                f"({type(layer).__name__}) of model {model.name!r}: it packs "
                "Dense, BatchNormalization, activation and Add layers (the "
                "MLPs of keras_egf.architectures)")
        tensors[id(layer.output)] = y
    return keras.Model(inputs, tensors[id(model.outputs[0])], name="packed")


def copy_in(packed, members):
    """Writes each member's weights, masks and structure into the pack."""
    for layer in packed.layers:
        if not layer.weights:
            continue
        values = [v.numpy() for v in layer.weights]
        slot = {v.name: value for v, value in zip(layer.weights, values)}
        for k, member in enumerate(members):
            source = member.model.get_layer(layer.name)
            if isinstance(layer, PackedDense):
                kernel = source.kernel.numpy()
                mask = (source.mask.numpy().astype(np.float32)
                        if layers_lib.is_masked_layer(source) else np.ones_like(kernel))
                fi, fo = kernel.shape
                slot["kernel"][k, :fi, :fo] = kernel * mask
                if layer.use_bias:
                    slot["bias"][k, :fo] = source.bias.numpy()
                slot["mask"][k, :fi, :fo] = mask
                slot["structure"][k, :fi, :fo] = 1.0
            else:  # BatchNorm (gamma, beta, moving mean/variance), PReLU:
                # (K * units,) or (K, units), member k's units first
                for target, value in zip(values, source.get_weights()):
                    target.reshape(len(members), -1)[k, :value.shape[-1]] = value
        layer.set_weights(values)


def member_weights(packed, member, k):
    """{layer name: [arrays]} of member k cut out of the pack, in the
    member model's layer order (kernels as kernel * mask)."""
    out = {}
    for layer in member.model.layers:
        if not layer.weights:
            continue
        source = packed.get_layer(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if isinstance(source, PackedDense):
            kernel = source.kernel.numpy()[k]
            fi, fo = shapes[0]
            out[layer.name] = [kernel[:fi, :fo]] + (
                [source.bias.numpy()[k, :fo]] if source.use_bias else [])
        else:
            members = int(packed.inputs[0].shape[1])
            out[layer.name] = [w.numpy().reshape(members, -1)[k, :s[-1]]
                               for w, s in zip(source.weights, shapes)]
    return out
