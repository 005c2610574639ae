"""`MaskedModel`: a keras.Model whose training step masks kernel gradients
and reports gradient flow (gf_1, gf_2) and effective gradient flow
(egf_1, egf_2) from the step's own backward pass.

One backward pass yields g_l = dC/dW_l for every prunable layer l, W_l the
effective kernel (see `keras_egf.layers.effective_kernel_gradients`). Then:
- gf_p  = ||concat(g_1..g_L)||_p            (pruned positions included)
- egf_p = (1/L) sum_l ||g_l * m_l||_p
- the optimizer receives g_l * m_l, so a pruned kernel entry that is 0 stays
  exactly 0 under SGD, momentum, Adagrad, RMSProp, Adam and AdamW's decoupled
  weight decay (every one of them maps (w=0, g=0, zero state) to w=0).

Plain Dense/Conv2D layers count as prunable layers with an all-ones mask, so
a dense twin reports the same measures (EGF_1 == gf_1 / L there).
"""

import keras
import tensorflow as tf

from keras_egf.gradient_flow import gradient_flow, layer_norms
from keras_egf import layers as layers_lib

GRADIENT_FLOW_METRICS = ("gf_1", "gf_2", "egf_1", "egf_2")
_OPTIONS = ("track_gradient_flow", "mask_product")


@keras.saving.register_keras_serializable(package="keras_egf")
class MaskedModel(keras.Model):
    """A `keras.Model` for masked (sparse) networks, with gradient flow.

    Build it like a functional model, `MaskedModel(inputs, outputs)`, or wrap
    an existing functional/Sequential model with `MaskedModel.wrap(model)`.

    Args:
        track_gradient_flow: report gf_1, gf_2, egf_1, egf_2 per training step
            (per-epoch means in History, the progress bar and TensorBoard).
        mask_product: how the training step forms the effective kernel,
            `"identity"` (default: reads the kernel, which is exactly 0 at
            pruned positions; fastest) or `"straight_through"` (multiplies
            kernel by mask in the forward pass). Both give the same values.
    """

    def __init__(self, *args, **kwargs):
        options = {k: kwargs.pop(k) for k in _OPTIONS if k in kwargs}
        super().__init__(*args, **kwargs)
        self._set_options(**options)

    def _set_options(
        self,
        track_gradient_flow=True,
        mask_product=layers_lib.MASK_PRODUCT_IDENTITY,
    ):
        allowed = (
            layers_lib.MASK_PRODUCT_IDENTITY,
            layers_lib.MASK_PRODUCT_STRAIGHT_THROUGH,
        )
        if mask_product not in allowed:
            raise ValueError(
                f"mask_product must be one of {allowed}. "
                f"Received: mask_product={mask_product!r}"
            )
        self.track_gradient_flow = bool(track_gradient_flow)
        self.mask_product = mask_product
        if self.track_gradient_flow and not hasattr(self, "gf_1_tracker"):
            for name in GRADIENT_FLOW_METRICS:
                setattr(self, f"{name}_tracker", keras.metrics.Mean(name=name))

    @classmethod
    def wrap(cls, model, **options):
        """Returns a MaskedModel sharing `model`'s layers and weights."""
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError):
            inputs = outputs = None
        if not inputs or not outputs:
            raise ValueError(
                f"Model {model.name!r} has no defined inputs/outputs; build "
                "it with a keras.Input first (functional or Sequential)."
            )
        return cls(inputs=inputs, outputs=outputs, name=model.name, **options)

    def get_config(self):
        config = super().get_config()
        config["track_gradient_flow"] = self.track_gradient_flow
        config["mask_product"] = self.mask_product
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        options = {k: config.pop(k) for k in _OPTIONS if k in config}
        model = super().from_config(config, custom_objects=custom_objects)
        model._set_options(**options)
        return model

    def prunable_layers(self):
        """Layers whose kernels the gradient flow measures cover, in order."""
        return layers_lib.prunable_layers(self)

    def kernels_and_masks(self):
        """Returns [(kernel variable, mask variable or None)] per layer."""
        pairs = []
        for layer in self.prunable_layers():
            mask = layer.mask if layers_lib.is_masked_layer(layer) else None
            pairs.append((layer.kernel, mask))
        return pairs

    def enforce_masks(self):
        """Zeroes pruned kernel entries (one write per masked layer)."""
        for layer in self.prunable_layers():
            if layers_lib.is_masked_layer(layer):
                layer.apply_mask_to_kernel()

    def fit(self, *args, **kwargs):
        # The "identity" mask product relies on pruned kernel entries being
        # 0; re-establish that once per fit, in case weights were assigned.
        self.enforce_masks()
        return super().fit(*args, **kwargs)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            with layers_lib.effective_kernel_gradients(self.mask_product):
                y_pred = self(x, training=True)
            loss = self._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                training=True,
            )
            batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
            self._loss_tracker.update_state(
                _unscale_for_distribution(loss), sample_weight=batch_size
            )
            if self.optimizer is not None:
                loss = self.optimizer.scale_loss(loss)

        weights = self.trainable_weights
        grads = tape.gradient(loss, weights)
        # gradients are g (unmasked) for kernels: mask them for the optimizer.
        index = {id(v): i for i, v in enumerate(weights)}
        kernel_grads, masked, masks = [], [], []
        for kernel, mask in self.kernels_and_masks():
            i = index.get(id(kernel))
            if i is None or grads[i] is None:
                continue
            kernel_grads.append(grads[i])
            if mask is not None:
                grads[i] = grads[i] * tf.cast(mask, grads[i].dtype)
            masked.append(grads[i])
            masks.append(mask)
        self.optimizer.apply_gradients(zip(grads, weights))

        if self.track_gradient_flow and kernel_grads:
            replica = tf.distribute.get_replica_context()
            if replica is not None and replica.num_replicas_in_sync > 1:
                # Each replica holds its share of the batch gradient (the
                # loss is scaled by 1/replicas): the measures need the sum.
                kernel_grads = replica.all_reduce(
                    tf.distribute.ReduceOp.SUM, kernel_grads)
                masked = [g if m is None else g * tf.cast(m, g.dtype)
                          for g, m in zip(kernel_grads, masks)]
            self._update_gradient_flow(kernel_grads, masked)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _update_gradient_flow(self, kernel_grads, masked):
        values = {
            "gf_1": gradient_flow(kernel_grads, p=1),
            "gf_2": gradient_flow(kernel_grads, p=2),
            "egf_1": tf.reduce_mean(layer_norms(masked, p=1)),
            "egf_2": tf.reduce_mean(layer_norms(masked, p=2)),
        }
        for name, value in values.items():
            getattr(self, f"{name}_tracker").update_state(value)

    def test_step(self, data):
        logs = super().test_step(data)
        return {k: v for k, v in logs.items() if k not in GRADIENT_FLOW_METRICS}


def _unscale_for_distribution(loss):
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * replicas if replicas > 1 else loss
