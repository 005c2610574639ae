"""keras-egf: sparse network optimisation with Effective Gradient Flow.

Masked Keras 3 layers, gradient flow measures (gf, EGF), a training model that
masks gradients and reports them, and same-capacity sparse/dense pairs
(SC-SDC), after Tessera, Hooker & Rosman, arXiv 2102.01670.
"""

from keras_egf.activations import SReLU
from keras_egf.architectures import ACTIVATIONS, build_mlp, register_architecture
from keras_egf.capacity import (
    active_weights,
    dense_equivalent,
    same_capacity_pair,
    same_capacity_plan,
)
from keras_egf.gradient_flow import (
    GRADIENT_FLOW_METRICS,
    effective_gradient_flow,
    gradient_flow,
    gradient_flow_measures,
    layer_norms,
    masked_gradients,
)
from keras_egf.layers import (
    MaskedConv2D,
    MaskedDense,
    effective_kernel_gradients,
    prunable_layers,
    prunable_weights,
)
from keras_egf.masking import masked_class
from keras_egf.model import MaskedModel
from keras_egf.prunable import PrunableLayer, register_prunable_layer
from keras_egf.pruning import (
    all_distribution_names,
    all_pruning_method_names,
    apply_masks,
    compute_masks,
    get_masks,
    magnitude_masks,
    prune,
    is_pruned_m_by_n,
    prune_low_magnitude,
    prune_scope,
    random_masks,
    register_distribution,
    register_dynamic_method,
    register_pruning_method,
    strip_pruning,
)
from keras_egf.gradient_recorder import GradientRecorder
from keras_egf.optimizers import make_optimizer, register_optimizer

__version__ = "0.3.0"
