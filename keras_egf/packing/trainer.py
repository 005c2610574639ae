"""`PackedTrainer`: trains a pack's members as one packed MLP.

The members' objective is the sum of their mean losses (cross-entropy plus
each member's own kernel regularizer, `PackedDense.member_penalties`), so
each member's gradient is its own. The trainer calls the library's one
implementation of each measure and rule: gf/EGF with a member axis
(`gradient_flow_measures(..., members=True)`), the fixed-batch mean
gradient (`gradient_flow.mean_gradient`) of side-effect-free objective
gradients (`backend.gradients`), the divergence rule
(`callbacks.is_diverged`), and each member's `MemberLogs` for what its
unpacked run would record.
"""

import functools
import time

import keras
import numpy as np
import tensorflow as tf

from keras_egf import backend as backend_lib
from keras_egf import optimizers
from keras_egf.callbacks import DEFAULT_MAX_LOSS, divergence_reason, is_diverged
from keras_egf.gradient_flow import (
    GRADIENT_FLOW_METRICS,
    fixed_batch_point,
    gradient_flow_measures,
    masked_gradients,
    mean_gradient,
)
from keras_egf.packing.layers import PackedDense
from keras_egf.packing.members import copy_in, packed_model

MAX_LOSS = DEFAULT_MAX_LOSS  # as keras_egf.callbacks.DivergenceMonitor


def _f32(value):
    return float(np.float32(value))


class PackedTrainer:
    """Trains `members` (from `build_members`) as one packed MLP.

    Learning rates: members sharing one rate (all of a pack's, as on a grid
    without a learning-rate axis) train with the optimizer at that rate, as
    each would alone (the plain step). Otherwise the optimizer runs at rate
    1 and each member's step is scaled by its own rate afterwards (the
    scaling step); SGD, momentum, Adagrad, RMSProp, Adam and AdamW all move
    the weights by rate x (an update independent of the rate), so this is
    the same step. A member whose running epoch loss diverges is frozen
    (rate 0) and the others go on.
    """

    def __init__(self, members):
        self.members = members
        self.config = first = members[0].config
        self.packed = packed_model(members)
        copy_in(self.packed, members)
        self.dense_layers = [l for l in self.packed.layers if isinstance(l, PackedDense)]
        rates = [m.config.learning_rate for m in members]
        self.shared_rate = len(set(rates)) == 1
        self.optimizer = optimizers.make_optimizer(
            first.optimizer, rates[0] if self.shared_rate else 1.0, first.weight_decay)
        self.optimizer.build(self.packed.trainable_variables)
        self.rates = tf.constant(rates, tf.float32)
        self._make_statistics(len(members))
        self._make_functions(len(members), tuple(members[0].datasets.input_shape))
        self._fixed = self._fixed_batches()

    def _make_statistics(self, k):
        """Epoch statistics and divergence, kept on the device (no host sync
        per step): per member, reset at every epoch start."""
        self.alive = tf.Variable(tf.ones(k, tf.bool), trainable=False)
        self.loss_sum = tf.Variable(tf.zeros(k), trainable=False)
        self.correct = tf.Variable(tf.zeros(k), trainable=False)
        self.seen = tf.Variable(tf.zeros(k), trainable=False)
        self.gf_sum = tf.Variable(tf.zeros((len(GRADIENT_FLOW_METRICS), k)),
                                  trainable=False)
        self.measured = tf.Variable(0.0, trainable=False)
        self.diverged_loss = tf.Variable(tf.zeros(k), trainable=False)

    def _make_functions(self, k, input_shape):
        """One trace each, whatever the batch size (the last batch of an
        epoch is smaller); no autograph (no tensor-dependent Python)."""
        signature = [tf.TensorSpec((None, k) + input_shape, tf.float32),
                     tf.TensorSpec((None, k), tf.int64)]
        # One step for measured and unmeasured steps alike (`measure` a
        # tensor): for the small MLPs packing is for, the four reductions
        # cost less than tracing a second step. The scaling step serves
        # every step when the members' rates differ; with one shared rate,
        # the plain step serves until a member diverges.
        step = functools.partial(
            tf.function, autograph=False, jit_compile=self.config.jit_compile,
            input_signature=signature + [tf.TensorSpec((), tf.bool)])
        self._step = step(functools.partial(self._train_step, scale=True))
        self._plain_step = step(functools.partial(self._train_step, scale=False))
        # Test batches as the pipeline gives them, repeated per member inside.
        self._evaluate = tf.function(
            self._evaluate_step, autograph=False, input_signature=[
                tf.TensorSpec((None,) + input_shape, tf.float32),
                tf.TensorSpec((None,), tf.int64)])
        self._objective_grads = tf.function(
            self._objective_gradients, input_signature=signature, autograph=False)

    # --- the packed objective, its measures and its step ------------------
    def _member_losses(self, x, y, training):
        logits = self.packed(x, training=training)  # (B, K, C)
        ce = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        losses = tf.reduce_mean(ce, axis=0)  # (K,)
        penalties = [l.member_penalties() for l in self.dense_layers
                     if l.kernel_regularizer is not None]
        if penalties:
            losses += tf.add_n(penalties)
        correct = tf.reduce_sum(tf.cast(tf.equal(
            tf.argmax(logits, axis=-1), tf.cast(y, tf.int64)), tf.float32), axis=0)
        return losses, correct

    def _measures(self, kernel_grads, masked=None, per_layer=False):
        """gf over each member's own kernel shape (its structure), EGF over
        its mask: `gradient_flow_measures` with a member axis."""
        own = masked_gradients(kernel_grads, [l.structure for l in self.dense_layers])
        if masked is None:
            masked = masked_gradients(kernel_grads, [l.mask for l in self.dense_layers])
        return gradient_flow_measures(own, masked, per_layer=per_layer, members=True)

    def _train_step(self, x, y, measure, scale):
        weights = self.packed.trainable_variables
        with tf.GradientTape() as tape:
            losses, correct = self._member_losses(x, y, training=True)
            total = tf.reduce_sum(losses)
        grads = tape.gradient(total, weights)
        index = {id(v): i for i, v in enumerate(weights)}
        positions = [index[id(l.kernel)] for l in self.dense_layers]
        kernel_grads = [grads[i] for i in positions]
        masked = masked_gradients(kernel_grads, [l.mask for l in self.dense_layers])
        for i, g in zip(positions, masked):
            grads[i] = g
        if scale:
            before = [tf.identity(v) for v in weights]
        self.optimizer.apply(grads, weights)
        if scale:
            self._scale_steps(weights, before)
        values = self._measures(kernel_grads, masked)
        self._update_statistics(x, losses, correct, measure, tf.stack(
            [values[m] for m in GRADIENT_FLOW_METRICS]))
        return losses

    def _scale_steps(self, weights, before):
        """Each member's step at its own rate (with a shared rate, the step
        as taken); a frozen (diverged) member's weights stay."""
        k = len(self.members)
        rate = tf.where(self.alive, self.rates, 0.0)[:, None]
        for v, b in zip(weights, before):  # every variable: K members' slices
            vk, bk = tf.reshape(v, (k, -1)), tf.reshape(b, (k, -1))
            stepped = vk if self.shared_rate else bk + rate * (vk - bk)
            v.assign(tf.reshape(tf.where(rate > 0, stepped, bk), v.shape))

    def _update_statistics(self, x, losses, correct, measure, values):
        """The epoch's running statistics of the members still training, and
        divergence as keras_egf.callbacks.DivergenceMonitor sees it: the
        running mean loss after this step diverged (`is_diverged`)."""
        alive = self.alive
        n = tf.cast(tf.shape(x)[0], tf.float32)
        self.loss_sum.assign(tf.where(alive, self.loss_sum + losses * n, self.loss_sum))
        self.correct.assign(tf.where(alive, self.correct + correct, self.correct))
        self.seen.assign(tf.where(alive, self.seen + n, self.seen))
        count = alive[None] & measure
        self.gf_sum.assign(tf.where(count, self.gf_sum + values, self.gf_sum))
        self.measured.assign_add(tf.cast(measure, tf.float32))
        running = self.loss_sum / self.seen
        bad = alive & is_diverged(running, MAX_LOSS)
        self.diverged_loss.assign(tf.where(bad, running, self.diverged_loss))
        self.alive.assign(alive & ~bad)

    def _evaluate_step(self, x, y):
        k = len(self.members)
        return self._member_losses(tf.repeat(x[:, None], k, axis=1),
                                   tf.repeat(y[:, None], k, axis=1), training=False)

    def _objective_gradients(self, x, y):
        """Kernel gradients of the members' objectives, training mode, no
        side effects (`backend.gradients`, as
        keras_egf.callbacks.objective_kernel_gradients takes them)."""
        kernels = [l.kernel for l in self.dense_layers]
        ids = {id(v) for v in kernels}
        state = [(v, tf.identity(v.value)) for v in self.packed.variables
                 if id(v) not in ids]

        def objective():
            return tf.reduce_sum(self._member_losses(x, y, training=True)[0])
        return backend_lib.get().gradients(objective, kernels, state)[1]

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
        return [tuple(tf.stack([m.egf_batches[b][j] for m in self.members], 1)
                      for j in (0, 1))
                for b in range(len(self.members[0].egf_batches))]

    # --- training -----------------------------------------------------------
    def _fixed_batch_points(self):
        """Every member's fixed-batch point ({measure: float, "layers": ...})."""
        grads = mean_gradient(self._fixed, lambda b: self._objective_grads(*b),
                              lambda b: int(b[1].shape[0]))
        measures = self._measures(grads, per_layer=True)
        names = [l.name for l in self.dense_layers]
        return [fixed_batch_point(measures, names, member=k)
                for k in range(len(self.members))]

    def train(self, verbose=0):
        """Trains every member; returns the wall time in seconds."""
        config = self.config
        train = self._stacked([m.datasets.train for m in self.members])
        every = config.gradient_flow_every
        for member in self.members:
            member.logs.on_train_begin()
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
            if verbose:
                print(f"epoch {epoch + 1}/{config.epochs}: "
                      f"{int(self.alive.numpy().sum())}/{len(self.members)} "
                      "members training", flush=True)
        for member in self.members:
            member.logs.on_train_end()
        return time.perf_counter() - start

    def _end_epoch(self, epoch, in_epoch):
        """The epoch's logs (float32, as Keras's metrics report them) and, at
        an evaluation epoch, fixed-batch point, for the members that trained
        in it; records new divergences."""
        seen = self.seen.numpy()
        loss, correct = self.loss_sum.numpy(), self.correct.numpy()
        gf, measured = self.gf_sum.numpy(), max(float(self.measured.numpy()), 1.0)
        alive, diverged_loss = self.alive.numpy(), self.diverged_loss.numpy()
        evaluate = epoch in self.members[0].logs.egf.epochs_to_evaluate
        points = self._fixed_batch_points() if evaluate else None
        for i in np.flatnonzero(in_epoch):
            member = self.members[i]
            logs = {"accuracy": _f32(correct[i] / seen[i]),
                    **{m: _f32(gf[j, i] / measured)
                       for j, m in enumerate(GRADIENT_FLOW_METRICS)},
                    "loss": _f32(loss[i] / seen[i])}
            member.logs.on_epoch_end(epoch, logs, points[i] if evaluate else None)
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
