"""`MaskedModel`: a keras.Model whose training step masks kernel gradients
and reports gradient flow (gf_1, gf_2) and effective gradient flow
(egf_1, egf_2) from the step's own backward pass.

One backward pass yields g_l = dC/dW_l for every prunable layer l, W_l the
effective kernel (see `keras_egf.layers.effective_kernel_gradients`), C the
objective the optimizer minimises: the compiled loss plus `model.losses`
(weight regularisation), BatchNorm with batch statistics. Then:
- gf_p  = ||concat(g_1..g_L)||_p            (pruned positions included)
- egf_p = (1/L) sum_l ||g_l * m_l||_p
  (arithmetic: `keras_egf.gradient_flow.gradient_flow_measures`)
- the optimizer receives g_l * m_l, so a pruned kernel entry that is 0 stays
  exactly 0 under SGD, momentum, Adagrad, RMSProp, Adam and AdamW's decoupled
  weight decay (every one of them maps (w=0, g=0, zero state) to w=0).

Scale of the per-step measure: the value at a step is the norm of that
batch's gradient; History holds the mean of these per-batch norms over the
epoch's measured steps. (The fixed-batch measure of
`keras_egf.callbacks.EGFCallback` is the norm of the mean gradient over a
fixed batch set, a smaller number; both are legitimate, they are not
interchangeable.)

Mixed precision: under a loss-scaling optimizer (`mixed_float16` wraps the
optimizer in `keras.optimizers.LossScaleOptimizer`) the tape's gradients are
the scaled loss's; the measures are divided by the scale in force at that
step, and a step whose scaled gradients overflowed (the optimizer skips it)
is left out of the mean.

Plain Dense/Conv2D layers count as prunable layers with an all-ones mask, so
a dense twin reports the same measures (EGF_1 == gf_1 / L there).

The training step itself is backend code (`keras_egf.backend.tensorflow`,
`keras_egf.backend.jax`), written like Keras's own: forward and loss,
gradients, `mask_kernel_gradients`, the optimizer, `update_gradient_flow`.
A `keras_egf.gradient_recorder.GradientRecorder` handed over with
`record_kernel_gradients` gets a requested step's kernel gradients (RigL).
"""

import collections
import functools

import keras
from keras import ops

from keras_egf import backend as backend_lib
from keras_egf import layers as layers_lib
from keras_egf.gradient_flow import (
    GRADIENT_FLOW_METRICS, GradientFlowMean, gradient_flow_measures)
from keras_egf.validation import one_of, positive_int

_OPTIONS = ("track_gradient_flow", "mask_product", "gradient_flow_every",
            "source_model_class")
# Every step: History holds the paper's per-step measure, exactly. Its cost
# (benchmarks/RESULTS.md, docs/performance.md): 1.00-1.03x a step on the
# CNN and WRN-16-4, about 1.12x on the benchmark MLP on a 2-core CPU.
DEFAULT_GRADIENT_FLOW_EVERY = 1


class KernelGradients(collections.namedtuple(
        "KernelGradients", ("kernels", "grads", "masked", "masks"))):
    """One step's prunable kernels (those with a gradient, in
    `prunable_layers` order), their gradients g_l, g_l * m_l (what the
    optimizer receives) and masks m_l (None: no mask)."""


class MeasureEveryN:
    """`MaskedModel`'s train function when its step measures or records.

    Call k since the last `reset` (`reset_metrics`: each epoch's start,
    each `train_on_batch`) measures gf/EGF when k is a multiple of
    `gradient_flow_every` N; a call after the model's gradient recorder was
    asked (`GradientRecorder.request`) records. Each (measure, record)
    variant is its own compiled step, made on first use, so an unmeasured
    call runs exactly the untracked step: a conditional inside one compiled
    step would keep every gradient alive (and, under XLA, materialised) on
    every step.
    """

    def __init__(self, model):
        self.model = model
        self.calls = 0
        self._steps = {}

    def reset(self):
        self.calls = 0

    def __call__(self, *args):  # (iterator), or (state, iterator) on JAX
        model = self.model
        measure = (model.track_gradient_flow
                   and self.calls % model.gradient_flow_every == 0)
        self.calls += 1
        recorder = model._gradient_recorder
        if recorder is not None and not recorder.take_request():
            recorder = None
        key = (measure, recorder is not None)
        if key not in self._steps:
            step = functools.partial(model._train_step, recorder=recorder)
            self._steps[key] = backend_lib.get().make_step_function(
                model, step, recorder, measure)
        return self._steps[key](*args)


@keras.saving.register_keras_serializable(package="keras_egf")
class MaskedModel(keras.Model):
    """A `keras.Model` for masked (sparse) networks, with gradient flow.

    Build it like a functional model, `MaskedModel(inputs, outputs)`, or wrap
    an existing functional/Sequential model with `MaskedModel.wrap(model)`.

    Every entry point sees the effective kernel kernel * mask: `evaluate`,
    `predict` and `__call__` multiply by the mask; the training step too,
    except on the fast path below.

    Args:
        track_gradient_flow: report gf_1, gf_2, egf_1, egf_2 from the training
            step's own gradients (per-epoch means of per-batch norms in
            History, the progress bar and TensorBoard).
        gradient_flow_every: in `fit`, measure on the epoch's steps 0, N,
            2N, ... (so every epoch has a value; `train_on_batch` measures
            every call); measured steps are exact, the others run the
            untracked step and cost nothing extra. N counts calls of the
            train function: with `steps_per_execution=S` the measured
            steps are the S steps of calls 0, N, 2N, ... The default, 1,
            measures every step, so History's values are the exact epoch
            means.
            A `train_step` called from your own loop always measures.
        mask_product: how the training step forms the effective kernel.
            `"identity"` (default): inside `fit` and `train_on_batch`, which
            first zero every pruned kernel entry, the step reads the kernel
            as is (equal to kernel * mask there, one product per layer and
            step saved); a `train_step` called from anywhere else (a custom
            loop) multiplies by the mask. `"straight_through"`: always
            multiply. Both give the same values.
    """

    def __init__(self, *args, **kwargs):
        options = {k: kwargs.pop(k) for k in _OPTIONS if k in kwargs}
        super().__init__(*args, **kwargs)
        self._set_options(**options)

    def _set_options(
        self,
        track_gradient_flow=True,
        mask_product=layers_lib.MASK_PRODUCT_IDENTITY,
        gradient_flow_every=DEFAULT_GRADIENT_FLOW_EVERY,
        source_model_class="Functional",
    ):
        self.mask_product = one_of("mask_product", mask_product, (
            layers_lib.MASK_PRODUCT_IDENTITY,
            layers_lib.MASK_PRODUCT_STRAIGHT_THROUGH))
        self.track_gradient_flow = bool(track_gradient_flow)
        self.gradient_flow_every = positive_int("gradient_flow_every",
                                                gradient_flow_every)
        # What strip_pruning gives back (prune_low_magnitude sets it).
        self.source_model_class = one_of("source_model_class", source_model_class,
                                         ("Functional", "Sequential"))
        self._kernels_zeroed = False  # True while fit/train_on_batch run.
        if not hasattr(self, "_gradient_recorder"):
            # A GradientRecorder (plain object: Keras tracks neither it nor
            # its buffers, which are not weights of the model).
            self._gradient_recorder = None
        self.train_function = None  # options are read when it is made
        if self.track_gradient_flow and not hasattr(
                self, "gradient_flow_tracker"):
            self.gradient_flow_tracker = GradientFlowMean()

    @classmethod
    def wrap(cls, model, **options):
        """Returns a MaskedModel sharing `model`'s layers and weights, with
        its inputs and outputs in the same structure (a single tensor, a
        list, a dict) and names."""
        inputs, outputs = model_structure(model)
        if inputs is None or outputs is None:
            raise ValueError(
                f"Model {model.name!r} has no defined inputs/outputs; build "
                "it with a keras.Input first (functional or Sequential)."
            )
        if "source_model_class" not in options:
            options["source_model_class"] = (
                model.source_model_class if isinstance(model, MaskedModel)
                else "Sequential" if isinstance(model, keras.Sequential)
                else "Functional")
        return cls(inputs=inputs, outputs=outputs, name=model.name, **options)

    def get_config(self):
        config = super().get_config()
        config["track_gradient_flow"] = self.track_gradient_flow
        config["mask_product"] = self.mask_product
        config["gradient_flow_every"] = self.gradient_flow_every
        config["source_model_class"] = self.source_model_class
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

    def _with_zeroed_kernels(self, method, *args, **kwargs):
        # Within these calls only the training step writes the kernels, with
        # masked gradients: pruned entries zeroed here stay 0, so the step
        # may read the kernel as the effective kernel.
        self.enforce_masks()
        previous, self._kernels_zeroed = self._kernels_zeroed, True
        try:
            return method(*args, **kwargs)
        finally:
            self._kernels_zeroed = previous

    def fit(self, *args, **kwargs):
        _check_pruning_callback(self, kwargs.get("callbacks"))
        return self._with_zeroed_kernels(super().fit, *args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        return self._with_zeroed_kernels(super().train_on_batch, *args, **kwargs)

    def _step_mask_product(self):
        # Read when the step is traced: fit/train_on_batch trace Keras's
        # train_function inside _with_zeroed_kernels; a custom loop calling
        # train_step traces it outside, and gets the multiplying mode.
        if (self.mask_product == layers_lib.MASK_PRODUCT_IDENTITY
                and self._kernels_zeroed):
            return layers_lib.MASK_PRODUCT_IDENTITY
        return layers_lib.MASK_PRODUCT_STRAIGHT_THROUGH

    def make_train_function(self, force=False):
        """Keras's train function; a `MeasureEveryN` over compiled variants
        of the step when the step measures or records (the backend
        compiles a measuring step its own way: see
        `keras_egf.backend.tensorflow.make_step_function`)."""
        if self.train_function is not None and not force:
            return self.train_function
        if self._gradient_recorder is None and not self.track_gradient_flow:
            super().make_train_function(force=True)
        else:
            self.train_function = MeasureEveryN(self)
        return self.train_function

    def reset_metrics(self):
        super().reset_metrics()
        if isinstance(self.train_function, MeasureEveryN):
            self.train_function.reset()

    def record_kernel_gradients(self, recorder):
        """Hands `recorder` (a `keras_egf.gradient_recorder.GradientRecorder`,
        or None to stop) to the training step: a training call after
        `recorder.request()` stores every masked layer's effective-kernel
        gradient g = dC/d(kernel * mask) in it, pruned positions included,
        unscaled, from its own backward pass (before its optimizer update),
        whatever `gradient_flow_every`. The buffers are the recorder's, not
        weights of the model (not saved, not trained)."""
        if recorder is self._gradient_recorder:
            return
        if recorder is not None:
            strategy = getattr(self, "distribute_strategy", None)  # TF only
            if strategy is not None and strategy.num_replicas_in_sync > 1:
                raise ValueError("Recorded kernel gradients (dynamic sparse "
                                 "training) need a single replica.")
            recorder.build(self)
        self._gradient_recorder = recorder
        self.make_train_function(force=True)

    def train_step(self, *args):
        """One training step; measures gf/EGF when tracking is on. Takes
        what Keras's step takes on the backend: `(data)` on TensorFlow,
        `(state, data)` on JAX (and returns `(logs, state)` there)."""
        return self._train_step(*args, measure=self.track_gradient_flow)

    def _train_step(self, *args, measure, recorder=None):
        return backend_lib.get().train_step(self, *args, measure=measure,
                                            recorder=recorder)

    def mask_kernel_gradients(self, variables, grads, mask_values=None):
        """(grads, KernelGradients) of one step: `grads` (one per variable
        of `variables`) with each prunable kernel's g_l replaced by
        g_l * m_l, what the optimizer receives (a pruned entry that is 0
        stays 0), and the step's kernel gradients. `mask_values`:
        {id(mask variable): value}, where the step holds the masks as
        values (JAX's stateless step); by default the variables are read."""
        grads = list(grads)
        index = {id(v): i for i, v in enumerate(variables)}
        dense = backend_lib.get().as_tensor  # an embedding's IndexedSlices
        step = KernelGradients([], [], [], [])
        for kernel, mask in self.kernels_and_masks():
            i = index.get(id(kernel))
            if i is None or grads[i] is None:  # a frozen kernel
                continue
            g = grads[i] = dense(grads[i])
            if mask is not None:
                value = mask if mask_values is None else mask_values[id(mask)]
                grads[i] = g * ops.cast(value, g.dtype)
            step.kernels.append(kernel)
            step.grads.append(g)
            step.masked.append(grads[i])
            step.masks.append(mask)
        return grads, step

    def update_gradient_flow(self, grads, masked, scale=None):
        """Updates the gf/EGF trackers from one step's kernel gradients g_l
        and g_l * m_l. Under loss scaling (`scale`) the measures are divided
        by the scale, and a step whose scaled gradients overflowed (the
        optimizer skips it) is left out of the mean."""
        values = gradient_flow_measures(grads, masked)
        weight = None
        if (scale is not None and isinstance(
                self.optimizer, keras.optimizers.LossScaleOptimizer)):
            # Not a gradient training follows, so not counted.
            weight = ops.isfinite(values["gf_1"])
        self.gradient_flow_tracker.update_state(values, scale, weight)

    def test_step(self, *args):
        result = super().test_step(*args)
        if isinstance(result, tuple):  # JAX: (logs, state)
            return _without_measures(result[0]), result[1]
        return _without_measures(result)


# Legacy .h5 files name classes without their package.
keras.saving.get_custom_objects()["MaskedModel"] = MaskedModel


def _without_measures(logs):
    return {k: v for k, v in logs.items() if k not in GRADIENT_FLOW_METRICS}


def model_structure(model):
    """(inputs, outputs) of a functional or Sequential model in the
    structure it was built with (a tensor, a list, a dict); (None, None)
    when it has none."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return None, None
    if not inputs or not outputs:
        return None, None
    if isinstance(model, keras.Sequential):
        return inputs[0], outputs[0]
    return (getattr(model, "_inputs_struct", inputs),
            getattr(model, "_outputs_struct", outputs))


def _check_pruning_callback(model, callbacks):
    """TFMOT's rule: a model whose layers carry a pruning schedule trains
    only with `UpdatePruningStep` (else the schedule would never run)."""
    # Here: keras_egf.pruning imports this module (a circular import).
    from keras_egf.pruning.gradual import UpdatePruningStep

    scheduled = [l.name for l in layers_lib.model_layers(model)
                 if getattr(l, "pruning_schedule", None) is not None]
    if not scheduled:
        return
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = callbacks.callbacks
    if any(isinstance(c, UpdatePruningStep) for c in callbacks or ()):
        return
    raise ValueError(
        f"Model {model.name!r} has layers with a pruning schedule "
        f"({scheduled[:5]}{' ...' if len(scheduled) > 5 else ''}) but fit got "
        "no keras_egf.pruning.UpdatePruningStep callback, so the schedule "
        "would never run: pass callbacks=[UpdatePruningStep()] (or "
        "strip_pruning the model first to train it dense).")


def loss_scale(optimizer, dtype="float32"):
    """The factor `optimizer.scale_loss` multiplies the loss by, or None.

    (LossScaleOptimizer's dynamic scale, or an optimizer's
    `loss_scale_factor`.) Read before `apply_gradients`, which may change it.
    """
    return backend_lib.get().loss_scale(optimizer, dtype)
