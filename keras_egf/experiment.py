"""One SC-SDC comparison: build the same-capacity pair, train both models on
the same data order with EGF tracking, evaluate, and write results.

Shared by the training binary (trainers/train.py) and the sweep, so both run
one code path. `run_comparison(config, output_dir)` returns the results dict
it also writes atomically to `output_dir/results.json`.
"""

import math
import os
import platform
import time
import warnings

import numpy as np

from keras_egf.files import (  # noqa: F401  (re-exported)
    check_output_dir,
    finite_or_none,
    write_json_atomic,
    write_text_atomic,
)

from keras_egf.config import (  # noqa: F401  (re-exported)
    EGF_DATA,
    MODEL_CHOICES,
    OPTIMIZERS,
    PRUNING_METHODS,
    REGULARIZERS,
    ComparisonConfig,
)


# What each gf/EGF number in results.json is (also in the README).
GRADIENT_FLOW_SCALES = {
    "history": "per-step measure: mean, over the epoch's measured training "
               "steps (every gradient_flow_every-th step and the first of the "
               "epoch), of the norms of each batch's gradient",
    "egf_points": "fixed-batch measure: norms of the mean gradient of the "
                  "training objective over a fixed batch set (egf_batches "
                  "batches of the egf_data split) at egf_points epochs",
    "average": "fixed-batch measure averaged over the egf_points epochs (the "
               "paper's average EGF; what the report correlates)",
}


def make_optimizer(name, learning_rate, weight_decay=0.0):
    """A Keras optimizer by grid name (momentum = SGD with momentum 0.9)."""
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "adagrad":
        return keras.optimizers.Adagrad(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}. Supported: {list(OPTIMIZERS)}")


def versions():
    """Versions of what a result depends on."""
    import keras
    import tensorflow as tf

    import keras_egf
    from keras_egf import backend as backend_lib

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "keras_egf": keras_egf.__version__,
            "numpy": np.__version__, "platform": platform.platform(),
            **backend_lib.description()}


def mask_digests(model):
    """{layer name: sha256 of its mask bytes} for masked layers."""
    import hashlib

    from keras_egf.pruning import get_masks

    return {name: hashlib.sha256(np.ascontiguousarray(m).tobytes()).hexdigest()
            for name, m in get_masks(model).items()}


def _datasets(config, augment=False):
    """The config's pipelines: flattened for an MLP, images for convnets."""
    from keras_egf import data

    return data.make_datasets(
        config.dataset, batch_size=config.batch_size, seed=config.seed,
        data_dir=config.data_dir, flatten=config.arch == "mlp", augment=augment)


def num_train_examples(config):
    """Training examples of the config's dataset (DatasetNotPreparedError
    for a tfds one not prepared here)."""
    return _datasets(config).num_train


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
    from keras_egf.pruning import dynamic

    if config.batch_size > num_train and not allow_small_dataset:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the training set "
            f"of {config.dataset} ({num_train} examples): every epoch would be "
            f"one step on all of them; choose batch_size <= {num_train} "
            "(or allow it: --allow_small_dataset, allow_small_dataset=True)")
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


def _build_pair(config, ds):
    from keras_egf.capacity import same_capacity_pair
    from keras_egf.pruning import get_pruning_method

    regs = set(config.regularizers)
    batches = None
    if get_pruning_method(config.pruning).needs_data:
        batches = list(ds.train.take(config.pruning_batches))
    return same_capacity_pair(
        ds.input_shape, config.dense_widths(), ds.num_classes,
        config.effective_multiplier(), activation=config.activation,
        arch=config.arch, wrn_depth=config.wrn_depth,
        seed=config.seed, pruning=config.pruning, batches=batches,
        batch_norm="bn" in regs,
        skip_connections="sc" in regs,
        weight_decay=config.weight_decay if "l2" in regs else 0.0,
        gradient_flow_every=config.gradient_flow_every)


def _train_one(name, model, config, output_dir, verbose):
    import keras

    from keras_egf import callbacks as cb
    from keras_egf.capacity import active_weights

    keras.utils.set_random_seed(config.seed)
    ds = _datasets(config, augment="da" in config.regularizers)
    fixed = _datasets(config)
    source = fixed.train if config.egf_data == "train" else fixed.test
    egf_batches = list(source.take(config.egf_batches))
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate,
                                 config.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], jit_compile=config.jit_compile)
    log_dir = os.path.join(output_dir, "tensorboard", name)
    egf = cb.EGFCallback(egf_batches, config.epochs, config.egf_points,
                         log_dir=os.path.join(log_dir, "egf"))
    divergence = cb.DivergenceMonitor()
    callbacks = [divergence, egf,
                 keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False)]
    dynamic = None
    if name == "sparse" and config.sparse_training != "static":
        from keras_egf.pruning import DynamicSparsity
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


def model_result(model, history, egf_points, average, diverged, diverged_epoch,
                 diverged_reason, mask_updates, train_time):
    """One trained model's entry of results.json, before its test metrics
    (`add_test_metrics`)."""
    from keras_egf.capacity import active_weights
    from keras_egf.layers import prunable_layers

    return {
        "active_weights": dict(active_weights(model)),
        "widths": [int(l.kernel.shape[-1]) for l in prunable_layers(model)],
        "mask_sha256": mask_digests(model),
        "history": history,
        "egf_points": egf_points,
        "average": average,
        "diverged": diverged,
        "diverged_epoch": diverged_epoch,
        "diverged_reason": diverged_reason,
        "epochs_run": len(history.get("loss", [])),
        "mask_updates": mask_updates,
        "train_time_s": train_time,
    }


def add_test_metrics(result, loss, accuracy, eval_time=None):
    """Adds test loss/accuracy to a `model_result`; a diverged model (or a
    non-finite test loss, which then counts as diverged in the last epoch
    run) gets None for both."""
    if result["diverged"] or loss is None or not math.isfinite(float(loss)):
        if not result["diverged"] or result["diverged_epoch"] is None:
            result.update(diverged=True, diverged_epoch=result["epochs_run"] - 1)
        result.update(test_loss=None, test_accuracy=None)
        return result
    result.update(test_loss=float(loss), test_accuracy=float(accuracy),
                  eval_time_s=eval_time)
    return result


def results_header(config, ds, replicas=1):
    """results.json without its models: config, versions, dataset, replicas
    and the gradient-flow scales."""
    return {"config": config.to_dict(), "versions": versions(),
            "dataset": {"num_train": ds.num_train, "num_test": ds.num_test,
                        "input_shape": list(ds.input_shape),
                        "num_classes": ds.num_classes},
            "replicas": replicas,
            "gradient_flow_scales": GRADIENT_FLOW_SCALES,
            "models": {}}


def run_comparison(config, output_dir, verbose=1, plot=True, strategy=None,
                   allow_small_dataset=False):
    """Runs one SC-SDC comparison and writes results.json (+ PNG, TB logs).

    `strategy`: a tf.distribute strategy (e.g. MirroredStrategy over several
    GPUs) under whose scope both models are built, compiled and trained.
    A run `check_trainable` refuses raises ValueError before training
    (`allow_small_dataset`: a batch larger than the training set only warns).
    """
    import contextlib

    import tensorflow as tf

    config.validate()
    check_output_dir(output_dir)
    tf.config.experimental.enable_op_determinism()
    import keras
    keras.utils.set_random_seed(config.seed)
    ds = _datasets(config)
    check_trainable(config, ds.num_train, allow_small_dataset)
    if "sc" in config.regularizers and config.depth == 1:
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
        pair = _build_pair(config, ds)
    names = ("sparse", "dense") if config.models == "both" else (config.models,)
    start = time.perf_counter()
    results = results_header(
        config, ds, strategy.num_replicas_in_sync if strategy else 1)
    for name in names:
        model = pair.sparse if name == "sparse" else pair.dense
        with scope():
            results["models"][name] = _train_one(name, model, config,
                                                 output_dir, verbose)
    results["wall_time_s"] = time.perf_counter() - start
    write_json_atomic(os.path.join(output_dir, "results.json"), results)
    if plot:
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
    from keras_egf import data
    from keras_egf import files

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
