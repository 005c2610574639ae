"""Layer collapse: is every layer of a pruned model still trainable?

A layer has collapsed when all its weights are pruned, or when no gradient
reaches its kept weights (its masked gradient norm ||g_l * m_l|| is 0: no
kept weight lies on a path from input to output with live units), so
training can never change it. `layer_collapse` reports both, with the
model's EGF_2 on the given batches.
"""

import collections

import numpy as np
from keras import ops

from keras_egf.gradient_flow import gradient_flow_measures, masked_gradients
from keras_egf.pruning.masks import get_masks, masked_layers
from keras_egf.pruning.scores import effective_kernel_loss_gradients

LayerHealth = collections.namedtuple("LayerHealth", ["name", "kept", "grad_norm"])
CollapseReport = collections.namedtuple(
    "CollapseReport", ["layers", "collapsed", "egf_2"])


def layer_collapse(model, batches, loss=None):
    """CollapseReport(layers, collapsed names, EGF_2) of `model` on `batches`."""
    grads = effective_kernel_loss_gradients(model, batches, loss)
    masks = get_masks(model)
    names = [l.name for l in masked_layers(model)]
    g = [grads[n] for n in names]
    m = [masks[n] for n in names]
    measures = gradient_flow_measures(g, masked_gradients(g, m), per_layer=True)
    norms = ops.convert_to_numpy(measures["layers_egf_2"])
    layers = [LayerHealth(n, int(mask.sum()), float(norm))
              for n, mask, norm in zip(names, m, norms)]
    collapsed = [h.name for h in layers if h.kept == 0 or h.grad_norm == 0.0]
    return CollapseReport(layers, collapsed, float(np.mean(norms)))
