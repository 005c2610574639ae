"""Packed training: many grid points' sparse/dense MLPs as one computation.

A sweep trial of the bundled grids is a small MLP pair whose time goes to
per-trial overhead (tracing, pipelines, writers, Python per step). Points
that share everything but their seed, learning rate and widths (`pack_key`)
can instead be trained together: every layer holds the K members' kernels
stacked, (K, fan_in, fan_out), and one batched matmul (einsum) runs them
all. Narrower members are padded to the widest with a *structural* mask,
which is never counted as a pruned weight: gf (which includes pruned
positions) is taken over each member's own kernel shape, EGF over its
pruning mask, so both stay each member's own.

Each member keeps what it would have alone:
- its initial weights and masks (built by the very code of an unpacked run,
  `keras_egf.experiment`, then copied in);
- its data order (its seed's pipeline; members are stacked along axis 1 of
  the batch, x of shape (batch, K, features));
- its objective: the packed loss is the sum of the members' mean losses,
  so each member's gradient is its own;
- its learning rate: members sharing one rate (all of a pack's, as on a
  grid without a learning-rate axis) train with the optimizer at that rate,
  as each would alone. Otherwise the optimizer runs at rate 1 and each
  member's step is scaled by its own rate afterwards. SGD, momentum,
  Adagrad, RMSProp, Adam and AdamW all move the weights by rate x (an
  update independent of the rate), so this is the same step; their
  momentum buffers then hold the unscaled update, which does not change
  the weights;
- its divergence handling: a member whose running epoch loss becomes NaN,
  Inf or exceeds 1e6 is frozen (rate 0) and recorded, the others go on;
- its fixed-batch EGF points, History, results.json and TensorBoard run, in
  the format of an unpacked run (`keras_egf.experiment.run_comparison`).

Equivalence: a member ends with the weights, metrics and gf/EGF of the same
point trained alone up to float rounding (batched matmuls sum in another
order; tests check 1e-5 after a few steps, and the smoke grid's report
agrees in every value). Over long runs the rounding differences stay small
where training is well conditioned and grow where it is chaotic (say
RMSProp without BatchNorm at a high learning rate), as they do between any
two float32 runs that sum in different orders, packed or not
(`benchmarks/packing.py` runs such a control beside the pack).

Supported: the MLP of `keras_egf.architectures` with relu, prelu, elu,
swish or sigmoid, any regularisers (NR, L2, DA, SC, BN), static masks from
any pruning method, one device.
"""

import functools
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_egf import experiment
from keras_egf import files
from keras_egf.callbacks import (
    DEFAULT_MAX_LOSS,
    LOG_PREFIX,
    divergence_reason,
    evaluation_epochs,
)
from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS

PACKABLE_ACTIVATIONS = ("relu", "prelu", "elu", "swish", "sigmoid")
# Settings the members of a pack may differ in; all others are shared.
MEMBER_FIELDS = ("seed", "learning_rate", "dense_width", "sparse_width",
                 "sparse_width_multiplier")
MAX_LOSS = DEFAULT_MAX_LOSS  # as keras_egf.callbacks.DivergenceMonitor


def _f32(value):
    return float(np.float32(value))


def pack_key(config):
    """What members of one pack share: every setting but MEMBER_FIELDS."""
    return tuple(sorted((k, repr(v)) for k, v in config.to_dict().items()
                        if k not in MEMBER_FIELDS))


def check_packable(config):
    """Raises ValueError naming the setting that packing does not support."""
    def bad(name, why):
        raise ValueError(f"{name}={getattr(config, name)!r}: {why}")

    if config.arch != "mlp":
        bad("arch", "packing trains MLPs only")
    if config.activation not in PACKABLE_ACTIVATIONS:
        bad("activation", f"packing supports {list(PACKABLE_ACTIVATIONS)} (SReLU's "
            "parameters are per unit, not per member)")
    if config.sparse_training != "static":
        bad("sparse_training", "packing keeps masks fixed")


def is_packable(config):
    """True when `check_packable` accepts `config`."""
    try:
        check_packable(config)
    except ValueError:
        return False
    return True


def group_points(points, config_of, size):
    """Grid points in packs of at most `size` sharing a `pack_key`, in grid
    order (a pack is ordered by its first point); a point packing does not
    support (`check_packable`) is a pack of its own."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"pack size must be an integer >= 1. Received: pack={size!r}")
    open_groups, groups = {}, []
    for point in points:
        config = config_of(point)
        if not is_packable(config):
            groups.append([point])
            continue
        key = pack_key(config)
        group = open_groups.get(key)
        if group is None or len(group) == size:
            group = open_groups[key] = []
            groups.append(group)
        group.append(point)
    return groups


class PackedDense(keras.layers.Layer):
    """K Dense layers in one: kernel (K, fan_in, units), bias (K, units)
    unless `use_bias=False`; `mask` (pruning and structure) and `structure`
    (the member's own shape) are non-trainable 0/1 arrays of the kernel's
    shape."""

    def __init__(self, members, units, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.members, self.units = int(members), int(units)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        shape = (self.members, int(input_shape[-1]), self.units)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="zeros")
        self.bias = (self.add_weight(name="bias", shape=shape[::2], initializer="zeros")
                     if self.use_bias else None)
        self.mask = self.add_weight(name="mask", shape=shape, initializer="zeros",
                                    trainable=False)
        self.structure = self.add_weight(name="structure", shape=shape,
                                         initializer="zeros", trainable=False)

    def call(self, inputs):
        # Pruned and padded kernel entries are 0 (masked gradients keep them
        # so), so the kernel is its own effective kernel.
        outputs = tf.einsum("bki,kio->bko", inputs, self.kernel)
        return outputs + self.bias if self.use_bias else outputs


def _packed_mlp(members, input_dim, widths, num_classes, activation, batch_norm,
                skip_connections):
    """The packed MLP: layer names as `build_mlp`'s (hidden_i, output,
    batch_norm_i, <activation>_i, skip_i)."""
    from keras_egf.architectures.common import activation_layer, bias_before_norm

    inputs = keras.Input(shape=(members, input_dim), name="inputs")
    x = inputs
    for i, units in enumerate(widths):
        h = PackedDense(members, units, use_bias=bias_before_norm(batch_norm),
                        name=f"hidden_{i}")(x)
        if batch_norm:  # statistics per member and unit: K * units features
            h = keras.layers.Reshape((members * units,))(h)
            h = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(h)
            h = keras.layers.Reshape((members, units))(h)
        h = activation_layer(activation, name=f"{activation}_{i}")(h)
        if skip_connections and i > 0:
            h = keras.layers.Add(name=f"skip_{i}")([x, h])
        x = h
    outputs = PackedDense(members, num_classes, name="output")(x)
    return keras.Model(inputs, outputs, name="packed")


class Member:
    """One model of a pack: its point's config, role, model and pipelines."""

    def __init__(self, index, point, config, name, model, datasets, egf_batches):
        self.index, self.point, self.config, self.name = index, point, config, name
        self.model, self.datasets, self.egf_batches = model, datasets, egf_batches
        self.history = {}
        self.points = []
        self.diverged = False
        self.diverged_epoch = self.reason = None


def _members(configs):
    """Builds every point's pair as an unpacked run would, seed by seed."""
    from keras_egf.pruning import get_pruning_method

    members, shapes, egf_by_seed = [], None, {}
    for p, config in enumerate(configs):
        config.validate()
        check_packable(config)
        tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        if get_pruning_method(config.pruning).needs_data:
            ds = experiment._datasets(config)  # a fresh pipeline to score on
        else:  # only its shapes are read: the same for the whole pack
            ds = shapes = shapes or experiment._datasets(config)
        pair = experiment._build_pair(config, ds)
        regs = config.regularizers
        keras.utils.set_random_seed(config.seed)
        train = experiment._datasets(config, augment="da" in regs)
        if config.seed not in egf_by_seed:  # the first batches of a fresh
            fixed = experiment._datasets(config)  # pipeline: one per seed
            source = fixed.train if config.egf_data == "train" else fixed.test
            egf_by_seed[config.seed] = list(source.take(config.egf_batches))
        egf_batches = egf_by_seed[config.seed]
        names = ("sparse", "dense") if config.models == "both" else (config.models,)
        for name in names:
            model = pair.sparse if name == "sparse" else pair.dense
            members.append(Member(len(members), p, config, name, model, train,
                                  egf_batches))
    return members


def _copy_in(packed, members):
    """Writes each member's weights, masks and structure into the pack."""
    from keras_egf import layers as layers_lib

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


class PackedTrainer:
    """Trains `members` (from `_members`) as one packed MLP."""

    def __init__(self, members):
        self.members = members
        first = members[0].config
        self.config = first
        widths = [max(int(m.model.get_layer(f"hidden_{i}").kernel.shape[-1])
                      for m in members) for i in range(first.depth)]
        ds = members[0].datasets
        regs = set(first.regularizers)
        self.packed = _packed_mlp(len(members), int(ds.input_shape[0]), widths,
                                  ds.num_classes, first.activation, "bn" in regs,
                                  "sc" in regs)
        _copy_in(self.packed, members)
        self.dense_layers = [l for l in self.packed.layers if isinstance(l, PackedDense)]
        self.l2 = first.weight_decay if "l2" in regs else 0.0
        rates = [m.config.learning_rate for m in members]
        # One rate for all: the optimizer runs at it, as each member's alone
        # would. Else at rate 1, each member's step scaled by its own rate.
        self.shared_rate = len(set(rates)) == 1
        self.optimizer = experiment.make_optimizer(
            first.optimizer, rates[0] if self.shared_rate else 1.0, first.weight_decay)
        self.optimizer.build(self.packed.trainable_variables)
        k = len(members)
        self.rates = tf.constant(rates, tf.float32)
        # Epoch statistics and divergence, kept on the device (no host sync
        # per step): per member, reset at every epoch start.
        self.alive = tf.Variable(tf.ones(k, tf.bool), trainable=False)
        self.loss_sum = tf.Variable(tf.zeros(k), trainable=False)
        self.correct = tf.Variable(tf.zeros(k), trainable=False)
        self.seen = tf.Variable(tf.zeros(k), trainable=False)
        self.gf_sum = tf.Variable(tf.zeros((4, k)), trainable=False)
        self.measured = tf.Variable(0.0, trainable=False)
        self.diverged_loss = tf.Variable(tf.zeros(k), trainable=False)
        jit = first.jit_compile
        # One trace each, whatever the batch size (the last batch of an
        # epoch is smaller); no autograph (no tensor-dependent Python).
        signature = [tf.TensorSpec((None, k) + tuple(ds.input_shape), tf.float32),
                     tf.TensorSpec((None, k), tf.int64)]

        def compiled(fn, **kwargs):
            return tf.function(fn, input_signature=signature, autograph=False, **kwargs)

        # One step for measured and unmeasured steps alike (`measure` a
        # tensor): for the small MLPs packing is for, the four reductions
        # cost less than tracing a second step.
        step_signature = signature + [tf.TensorSpec((), tf.bool)]
        # The scaling step serves every step when the members' rates differ;
        # with one shared rate, the plain step serves until a member diverges.
        self._step = tf.function(
            functools.partial(self._train_step, scale=True),
            autograph=False, jit_compile=jit, input_signature=step_signature)
        self._plain_step = tf.function(
            functools.partial(self._train_step, scale=False),
            autograph=False, jit_compile=jit, input_signature=step_signature)
        # Test batches as the pipeline gives them, repeated per member inside.
        self._evaluate = tf.function(
            self._evaluate_step, autograph=False, input_signature=[
                tf.TensorSpec((None,) + tuple(ds.input_shape), tf.float32),
                tf.TensorSpec((None,), tf.int64)])
        self._objective_grads = compiled(self._objective_gradients)
        self._fixed = self._fixed_batches()

    # --- the packed objective and step ------------------------------------
    def _member_losses(self, x, y, training):
        logits = self.packed(x, training=training)  # (B, K, C)
        ce = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        losses = tf.reduce_mean(ce, axis=0)  # (K,)
        if self.l2:
            losses += self.l2 * tf.add_n([tf.reduce_sum(tf.square(l.kernel), axis=[1, 2])
                                          for l in self.dense_layers])
        correct = tf.reduce_sum(tf.cast(tf.equal(
            tf.argmax(logits, axis=-1), tf.cast(y, tf.int64)), tf.float32), axis=0)
        return losses, correct

    def _measures(self, grads):
        """(4, K): gf_1, gf_2, egf_1, egf_2 per member, and the per-layer
        egf norms (L, 2, K)."""
        own = [g * l.structure for g, l in zip(grads, self.dense_layers)]
        masked = [g * l.mask for g, l in zip(grads, self.dense_layers)]
        gf_1 = tf.add_n([tf.reduce_sum(tf.abs(g), axis=[1, 2]) for g in own])
        gf_2 = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g), axis=[1, 2]) for g in own]))
        layer_1 = tf.stack([tf.reduce_sum(tf.abs(g), axis=[1, 2]) for g in masked])
        layer_2 = tf.stack([tf.sqrt(tf.reduce_sum(tf.square(g), axis=[1, 2]))
                            for g in masked])
        values = tf.stack([gf_1, gf_2, tf.reduce_mean(layer_1, axis=0),
                           tf.reduce_mean(layer_2, axis=0)])
        return values, tf.stack([layer_1, layer_2], axis=1)

    def _train_step(self, x, y, measure, scale):
        weights = self.packed.trainable_variables
        with tf.GradientTape() as tape:
            losses, correct = self._member_losses(x, y, training=True)
            total = tf.reduce_sum(losses)
        grads = tape.gradient(total, weights)
        kernels = {id(l.kernel): l for l in self.dense_layers}
        kernel_grads = [g for g, v in zip(grads, weights) if id(v) in kernels]
        grads = [g * kernels[id(v)].mask if id(v) in kernels else g
                 for g, v in zip(grads, weights)]
        if scale:
            before = [tf.identity(v) for v in weights]
        self.optimizer.apply(grads, weights)
        if scale:
            # Each member's step at its own rate (with a shared rate, the
            # step as taken); a frozen (diverged) member's weights stay.
            rate = tf.where(self.alive, self.rates, 0.0)[:, None]
            for v, b in zip(weights, before):  # every variable: K members' slices
                vk = tf.reshape(v, (len(self.members), -1))
                bk = tf.reshape(b, (len(self.members), -1))
                stepped = vk if self.shared_rate else bk + rate * (vk - bk)
                v.assign(tf.reshape(tf.where(rate > 0, stepped, bk), v.shape))
        # The epoch's running statistics of the members still training, and
        # divergence as keras_egf.callbacks.DivergenceMonitor sees it: the
        # running mean loss after this step NaN, Inf or above MAX_LOSS.
        alive = self.alive
        n = tf.cast(tf.shape(x)[0], tf.float32)
        self.loss_sum.assign(tf.where(alive, self.loss_sum + losses * n, self.loss_sum))
        self.correct.assign(tf.where(alive, self.correct + correct, self.correct))
        self.seen.assign(tf.where(alive, self.seen + n, self.seen))
        values = self._measures(kernel_grads)[0]
        count = alive[None] & measure
        self.gf_sum.assign(tf.where(count, self.gf_sum + values, self.gf_sum))
        self.measured.assign_add(tf.cast(measure, tf.float32))
        running = self.loss_sum / self.seen
        # (not ~(running <= MAX_LOSS): grappler rewrites that to
        # running > MAX_LOSS, which is False for NaN)
        bad = alive & (tf.math.is_nan(running) | (running > MAX_LOSS))
        self.diverged_loss.assign(tf.where(bad, running, self.diverged_loss))
        self.alive.assign(alive & ~bad)
        return losses

    def _evaluate_step(self, x, y):
        k = len(self.members)
        return self._member_losses(tf.repeat(x[:, None], k, axis=1),
                                   tf.repeat(y[:, None], k, axis=1), training=False)

    def _objective_gradients(self, x, y):
        """Kernel gradients of the members' objectives, training mode, no
        side effects (as keras_egf.callbacks.objective_kernel_gradients)."""
        trainable = list(self.packed.trainable_variables)
        values = [tf.identity(v) for v in trainable]
        state = [(v, tf.identity(v)) for v in self.packed.non_trainable_variables]
        index = {id(v): i for i, v in enumerate(trainable)}
        with tf.GradientTape() as tape:
            tape.watch(values)
            with keras.StatelessScope(state_mapping=list(zip(trainable, values)) + state):
                losses, _ = self._member_losses(x, y, training=True)
            total = tf.reduce_sum(losses)
        return tape.gradient(total, [values[index[id(l.kernel)]]
                                     for l in self.dense_layers])

    # --- data ---------------------------------------------------------------
    def _stacked(self, datasets):
        """One dataset of (x (B, K, d), y (B, K)) from the points' pipelines."""
        points = sorted({m.point for m in self.members})
        column = {p: i for i, p in enumerate(points)}
        by_point = {m.point: d for m, d in zip(self.members, datasets)}
        zipped = tf.data.Dataset.zip(tuple(by_point[p] for p in points))
        order = [column[m.point] for m in self.members]

        def stack(*pairs):
            return (tf.stack([pairs[i][0] for i in order], axis=1),
                    tf.stack([pairs[i][1] for i in order], axis=1))
        return zipped.map(stack)

    def _fixed_batches(self):
        stacked = []
        for b in range(len(self.members[0].egf_batches)):
            stacked.append((tf.stack([m.egf_batches[b][0] for m in self.members], 1),
                            tf.stack([m.egf_batches[b][1] for m in self.members], 1)))
        return stacked

    # --- training -----------------------------------------------------------
    def _fixed_batch_points(self, epoch, alive):
        total = sum(int(y.shape[0]) for _, y in self._fixed)
        accumulated = None
        for x, y in self._fixed:
            weight = float(x.shape[0]) / total
            grads = [weight * g for g in self._objective_grads(x, y)]
            accumulated = grads if accumulated is None else [
                a + g for a, g in zip(accumulated, grads)]
        values, layers = self._measures(accumulated)
        values, layers = values.numpy(), layers.numpy()
        for k, member in enumerate(self.members):
            if not alive[k]:
                continue
            point = {"epoch": int(epoch),
                     **{m: float(values[i, k]) for i, m in enumerate(GRADIENT_FLOW_METRICS)},
                     "layers": {l.name: {"egf_1": float(layers[j, 0, k]),
                                         "egf_2": float(layers[j, 1, k])}
                                for j, l in enumerate(self.dense_layers)}}
            member.points.append(point)
            for m in GRADIENT_FLOW_METRICS:
                member.history.setdefault(LOG_PREFIX + m, []).append(point[m])

    def train(self, verbose=0):
        """Trains every member; returns the wall time in seconds."""
        config = self.config
        train = self._stacked([m.datasets.train for m in self.members])
        every, eval_epochs = config.gradient_flow_every, set(
            evaluation_epochs(config.epochs, config.egf_points))
        start = time.perf_counter()
        for epoch in range(config.epochs):
            in_epoch = self.alive.numpy()
            if not in_epoch.any():
                break
            for v in (self.loss_sum, self.correct, self.seen, self.gf_sum, self.measured):
                v.assign(tf.zeros_like(v))
            for step, (x, y) in enumerate(train):
                # the plain step while every member trains at the shared rate
                # (one small read per step: the trainers' step is synchronous)
                plain = self.shared_rate and (in_epoch.all() if step == 0 else
                                              bool(tf.reduce_all(self.alive)))
                (self._plain_step if plain else self._step)(
                    x, y, tf.constant(step % every == 0))
            # Keras's fit makes a second iterator of its dataset at the end
            # of every epoch (and a new one at the next epoch's start), so a
            # reshuffling pipeline's epoch e is its iteration 2e + 1: the
            # same here, for the same data order as an unpacked run.
            iter(train)
            self._end_epoch(epoch, in_epoch)
            if epoch in eval_epochs:
                self._fixed_batch_points(epoch, in_epoch)
            if verbose:
                print(f"epoch {epoch + 1}/{config.epochs}: "
                      f"{int(self.alive.numpy().sum())}/{len(self.members)} "
                      "members training", flush=True)
        return time.perf_counter() - start

    def _end_epoch(self, epoch, in_epoch):
        """History of the epoch for the members that trained in it (float32,
        as Keras's metrics report them); records new divergences."""
        seen = self.seen.numpy()
        loss, correct = self.loss_sum.numpy(), self.correct.numpy()
        gf, measured = self.gf_sum.numpy(), max(float(self.measured.numpy()), 1.0)
        alive, diverged_loss = self.alive.numpy(), self.diverged_loss.numpy()
        for i in np.flatnonzero(in_epoch):
            member = self.members[i]
            h = member.history
            h.setdefault("accuracy", []).append(_f32(correct[i] / seen[i]))
            for j, m in enumerate(GRADIENT_FLOW_METRICS):
                h.setdefault(m, []).append(_f32(gf[j, i] / measured))
            h.setdefault("loss", []).append(_f32(loss[i] / seen[i]))
            if not alive[i]:
                member.diverged, member.diverged_epoch = True, epoch
                member.reason = divergence_reason(diverged_loss[i], MAX_LOSS)

    def evaluate(self):
        """[(test loss, test accuracy)] per member."""
        k = len(self.members)
        loss_sum, correct, seen = np.zeros(k), np.zeros(k), 0
        for x, y in self.members[0].datasets.test:
            losses, hits = self._evaluate(x, y)
            n = int(x.shape[0])
            loss_sum += losses.numpy() * n
            correct += hits.numpy()
            seen += n
        return [(_f32(a), _f32(b)) for a, b in zip(loss_sum / seen, correct / seen)]


def _member_result(member, train_time, test, eval_time):
    average = {m: float(np.mean([p[m] for p in member.points]))
               for m in GRADIENT_FLOW_METRICS} if member.points else {}
    result = experiment.model_result(
        member.model, member.history, member.points, average, member.diverged,
        member.diverged_epoch, member.reason, 0, train_time)
    return experiment.add_test_metrics(result, *test, eval_time)


def _scalar_events(log_dir, scalars):
    """Writes (tag, value, step) scalars as a TensorBoard event file in
    `log_dir`: the summaries `tf.summary.scalar` writes (float32 tensors of
    the scalars plugin), built as protos (no TensorFlow op per scalar: a
    pack writes thousands)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.scalar import summary_v2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(log_dir, filename_suffix=".v2")
    try:
        for tag, value, step in scalars:
            writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                             summary=summary_v2.scalar_pb(tag, value)))
    finally:
        writer.close()


def _write_tensorboard(member, output_dir):
    log_dir = os.path.join(output_dir, "tensorboard", member.name)
    # As Keras's TensorBoard callback: every History key per epoch (the
    # fixed_batch_* ones at their evaluation epochs) and the rate.
    eval_epochs = [point["epoch"] for point in member.points]
    train = [(f"epoch_{key}", value, epoch) for key, values in member.history.items()
             for epoch, value in zip(eval_epochs if key.startswith(LOG_PREFIX)
                                     else range(len(values)), values)]
    train += [("epoch_learning_rate", member.config.learning_rate, epoch)
              for epoch in range(len(member.history.get("loss", ())))]
    _scalar_events(os.path.join(log_dir, "train"), train)
    egf = []
    for point in member.points:
        egf += [(f"egf/{m}", point[m], point["epoch"]) for m in GRADIENT_FLOW_METRICS]
        egf += [(f"egf_layers/{name}/{m}", v, point["epoch"])
                for name, norms in point["layers"].items() for m, v in norms.items()]
    _scalar_events(os.path.join(log_dir, "egf"), egf)


def run_packed(configs, output_dirs, verbose=0, trainer_out=None):
    """Trains the points `configs` (one shared `pack_key`) as one pack and
    writes each point's results.json and TensorBoard runs into its
    `output_dirs` entry, in the format of `experiment.run_comparison`.
    Returns the points' results. `trainer_out` (a list) receives the
    PackedTrainer, for inspection."""
    if len(configs) != len(output_dirs) or not configs:
        raise ValueError("run_packed needs one output_dir per config. Received: "
                         f"{len(configs)} configs, {len(output_dirs)} output_dirs")
    keys = {pack_key(c) for c in configs}
    if len(keys) > 1:
        raise ValueError("configs of one pack may differ only in "
                         f"{list(MEMBER_FIELDS)}")
    for d in output_dirs:
        files.check_output_dir(d)
    members = _members(configs)
    trainer = PackedTrainer(members)
    if trainer_out is not None:
        trainer_out.append(trainer)
    start = time.perf_counter()
    train_time = trainer.train(verbose)
    t = time.perf_counter()
    tests = trainer.evaluate()
    eval_time = time.perf_counter() - t
    all_results = []
    for p, (config, out) in enumerate(zip(configs, output_dirs)):
        results = experiment.results_header(config, members[0].datasets)
        results["packed"] = {"members": len(members), "points": len(configs)}
        for k, member in enumerate(members):
            if member.point == p:
                results["models"][member.name] = _member_result(
                    member, train_time, tests[k], eval_time)
                _write_tensorboard(member, out)
        results["wall_time_s"] = time.perf_counter() - start
        files.write_json_atomic(os.path.join(out, "results.json"), results)
        all_results.append(files.finite_or_none(results))
    return all_results
