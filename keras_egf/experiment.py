"""One SC-SDC comparison: build the same-capacity pair, train both models on
the same data order with EGF tracking, evaluate, and write results.

Shared by the training binary (trainers/train.py) and the sweep, so both run
one code path. `run_comparison(config, output_dir)` returns the results dict
it also writes atomically to `output_dir/results.json` (its schema and
writers: `keras_egf.results`).

Its building blocks are public, so that the packed trainer
(`keras_egf.packing`) builds each member exactly as a run here would:
`datasets_for` (a config's pipelines), `training_datasets` (what a model
trains on), `fixed_egf_batches` (the fixed batch set of the EGF points),
`build_pair` (the same-capacity pair), `models_of` (the config's models of
a pair), `compile_model` (its optimizer, loss and metrics) and `train_one`
(train, measure and evaluate one model).
"""

import contextlib
import math
import os
import time
import warnings

import keras
import tensorflow as tf

from keras_egf import callbacks as cb
from keras_egf import data
from keras_egf import files
from keras_egf.capacity import active_weights, same_capacity_pair
from keras_egf.config import ComparisonConfig  # noqa: F401  (re-exported)
from keras_egf.files import check_output_dir, finite_or_none, write_json_atomic
from keras_egf.optimizers import make_optimizer
from keras_egf.pruning import DynamicSparsity, dynamic, get_pruning_method
from keras_egf.results import (  # noqa: F401  (versions, mask_digests re-exported)
    add_test_metrics,
    mask_digests,
    model_result,
    results_header,
    versions,
)


def datasets_for(config, augment=False):
    """The config's pipelines: flattened for an MLP, images for convnets."""
    return data.make_datasets(
        config.dataset, batch_size=config.batch_size, seed=config.seed,
        data_dir=config.data_dir, flatten=config.arch == "mlp", augment=augment)


def training_datasets(config):
    """The pipelines a model of `config` trains on (augmented under DA)."""
    return datasets_for(config, augment=config.augmentation)


def fixed_egf_batches(config):
    """The fixed batch set of the EGF points: the first `egf_batches`
    batches of a fresh pipeline's `egf_data` split."""
    fixed = datasets_for(config)
    source = fixed.train if config.egf_data == "train" else fixed.test
    return list(source.take(config.egf_batches))


def num_train_examples(config):
    """Training examples of the config's dataset (DatasetNotPreparedError
    for a tfds one not prepared here)."""
    return datasets_for(config).num_train


# The settings `check_trainable` (with `num_train_examples`) reads: a grid
# checks one config per combination of these (`Grid.configs_over`).
TRAINABLE_SETTINGS = ("dataset", "data_dir", "arch", "batch_size",
                      "sparse_training", "models", "epochs", "dst_update_every")


def check_trainable(config, num_train, allow_small_dataset=False):
    """Refuses a run that would train on nothing useful (ValueError naming
    the numbers): a batch larger than the `num_train` training examples
    (every epoch one batch of them all) unless `allow_small_dataset`, or
    set/rigl training too short for one mask update (it would be recorded
    as dynamic while its masks never changed)."""
    if config.batch_size > num_train and not allow_small_dataset:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training set "
            f"of {config.dataset} ({num_train} examples): every epoch would be "
            f"one step on all of them; choose batch_size <= {num_train} "
            "(or allow it: `allow_small_dataset=True`)")
    if config.sparse_training == "static" or config.models == "dense":
        return
    steps_per_epoch = math.ceil(num_train / config.batch_size)
    steps = config.epochs * steps_per_epoch
    updates = dynamic.update_steps(steps, config.dst_update_every)
    if len(updates) == 0:
        end = updates.stop
        fix = (f"choose dst_update_every <= {end - 1} or more epochs" if end > 1
               else "train for more steps")
        raise ValueError(
            f"sparse_training={config.sparse_training!r} would make no mask "
            f"update: dst_update_every={config.dst_update_every} steps, but "
            f"the run has {steps} training steps ({config.epochs} epoch(s) of "
            f"{steps_per_epoch}) and updates stop at "
            f"{dynamic.END_FRACTION:.0%} of them (step {end}); {fix}")


def build_pair(config, ds):
    """The config's same-capacity sparse/dense pair (`CapacityPair`); a
    data-driven pruning method scores on the first batches of `ds`."""
    batches = None
    if get_pruning_method(config.pruning).needs_data:
        batches = list(ds.train.take(config.pruning_batches))
    return same_capacity_pair(
        ds.input_shape, config.dense_widths(), ds.num_classes,
        config.effective_multiplier(), activation=config.activation,
        arch=config.arch, wrn_depth=config.wrn_depth,
        seed=config.seed, pruning=config.pruning, batches=batches,
        batch_norm=config.batch_norm,
        skip_connections=config.skip_connections,
        weight_decay=config.l2_factor,
        gradient_flow_every=config.gradient_flow_every)


def models_of(config, pair):
    """[(name, model)] of the models `config` trains, sparse first."""
    return [(name, pair.sparse if name == "sparse" else pair.dense)
            for name in config.model_names]


def compile_model(model, config):
    """Compiles `model` as a run trains it: the config's optimizer at its
    learning rate, cross-entropy on logits, accuracy."""
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate,
                                 config.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], jit_compile=config.jit_compile)


def train_one(name, model, config, output_dir, verbose):
    """Trains `model` (the pair's `name`) as the run does: its data order,
    EGF points, divergence monitor, TensorBoard runs under
    `output_dir/tensorboard/<name>` and dynamic sparsity; returns its
    results.json entry (`keras_egf.results.model_result`)."""
    keras.utils.set_random_seed(config.seed)
    ds = training_datasets(config)
    egf_batches = fixed_egf_batches(config)
    compile_model(model, config)
    log_dir = os.path.join(output_dir, "tensorboard", name)
    egf = cb.EGFCallback(egf_batches, config.epochs, config.egf_points,
                         log_dir=os.path.join(log_dir, "egf"))
    divergence = cb.DivergenceMonitor()
    callbacks = [divergence, egf,
                 keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False)]
    dynamic = None
    if name == "sparse" and config.sparse_training != "static":
        dynamic = DynamicSparsity(
            config.sparse_training, update_every=config.dst_update_every,
            drop_fraction=config.dst_drop_fraction, seed=config.seed,
            log_dir=os.path.join(log_dir, "dynamic_sparsity"))
        callbacks.insert(1, dynamic)  # masks updated before the EGF points
    if verbose:
        print(f"--- training the {name} model "
              f"({sum(active_weights(model).values())} active kernel weights)")
    start = time.perf_counter()
    history = model.fit(ds.train, epochs=config.epochs, callbacks=callbacks,
                        verbose=verbose, shuffle=False)  # shuffled by tf.data
    train_time = time.perf_counter() - start
    result = model_result(
        model, {k: [float(v) for v in vs] for k, vs in history.history.items()},
        egf.points, egf.average, divergence.diverged, divergence.epoch,
        divergence.reason, len(dynamic.updates) if dynamic else 0, train_time)
    if divergence.diverged:
        return add_test_metrics(result, None, None)
    start = time.perf_counter()
    logs = model.evaluate(ds.test, verbose=0, return_dict=True)
    return add_test_metrics(result, logs["loss"], logs["accuracy"],
                            time.perf_counter() - start)


def run_comparison(config, output_dir, verbose=1, plot=True, strategy=None,
                   allow_small_dataset=False):
    """Runs one SC-SDC comparison and writes results.json (+ PNG, TB logs).

    `strategy`: a tf.distribute strategy (e.g. MirroredStrategy over several
    GPUs) under whose scope both models are built, compiled and trained.
    A run `check_trainable` refuses raises ValueError before training
    (`allow_small_dataset`: a batch larger than the training set only warns).
    """
    config.validate()
    check_output_dir(output_dir)
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    ds = datasets_for(config)
    check_trainable(config, ds.num_train, allow_small_dataset)
    if config.skip_without_effect:
        warnings.warn(
            "regularizers include sc at depth=1: skip connections join "
            "equal-width hidden layers, so a 1-hidden-layer MLP has none and "
            "this run equals the one without sc", stacklevel=2)
    if config.batch_size > ds.num_train:
        warnings.warn(
            f"batch_size={config.batch_size} is larger than the training set "
            f"of {config.dataset} ({ds.num_train} examples): every epoch is "
            "one batch of all of them", stacklevel=2)

    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        pair = build_pair(config, ds)
    start = time.perf_counter()
    results = results_header(
        config, ds, strategy.num_replicas_in_sync if strategy else 1)
    for name, model in models_of(config, pair):
        with scope():
            results["models"][name] = train_one(name, model, config,
                                                output_dir, verbose)
    results["wall_time_s"] = time.perf_counter() - start
    write_json_atomic(os.path.join(output_dir, "results.json"), results)
    if plot:
        # matplotlib: imported only when a plot is asked for
        from keras_egf.plots import plot_comparison
        plot_comparison(results, os.path.join(output_dir, "comparison.png"))
    return finite_or_none(results)


def run_comparison_into(config, output_dir, overwrite=False, verbose=1,
                        allow_small_dataset=False):
    """`run_comparison` for a run's own folder (what `keras-egf-train` does).

    Checks the config, the dataset (`check_trainable`) and `output_dir`
    before creating anything: a folder that already holds files is refused
    unless `overwrite`, and even then unless it holds only a keras-egf run
    or sweep (`files.check_replaceable`). The run writes into a hidden
    staging folder beside `output_dir` (beside a link's target: the link
    is kept), which replaces `output_dir` (and whatever an earlier run
    left there) only once the run has finished; after an error or Ctrl-C
    the staging folder is removed and `output_dir` is as it was.
    """
    config.validate()
    data.check_available(config.dataset, config.data_dir)
    check_trainable(config, num_train_examples(config), allow_small_dataset)
    real = files.check_fresh_output_dir(output_dir, overwrite=overwrite)
    with files.staged_output_dir(real) as staging:
        results = run_comparison(config, staging, verbose=verbose,
                                 allow_small_dataset=allow_small_dataset)
    return results


def summary_line(results):
    """One line: each model's test accuracy and average EGF."""
    parts = []
    for name, r in results["models"].items():
        if r.get("diverged"):
            parts.append(f"{name}: diverged at epoch {r['diverged_epoch']}")
            continue
        avg = r.get("average") or {}
        parts.append(f"{name}: test acc {r['test_accuracy']:.4f}, loss "
                     f"{r['test_loss']:.4f}, avg EGF_2 {avg.get('egf_2', float('nan')):.4g}")
    return " | ".join(parts)
