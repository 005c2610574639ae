r"""Runs ONE SC-SDC comparison: a sparse MLP and its same-capacity dense twin.

    keras-egf-train --flagfile=configs/quickstart.flags --output_dir=runs/quick

Writes into --output_dir: results.json (config, versions, test loss/accuracy,
average and per-point gf/EGF, active weights per layer, wall times),
TensorBoard logs per model (tensorboard --logdir OUTPUT_DIR/tensorboard), and
comparison.png. A non-empty --output_dir is refused unless --overwrite; the
run trains into a hidden staging folder beside it, which replaces it only
when the run has finished (Ctrl-C leaves --output_dir as it was; exit 130).
"""

import math

from absl import app
from absl import flags

from keras_egf import data
from keras_egf import experiment
from keras_egf.architectures import ACTIVATIONS
from trainers import EXIT_INTERRUPTED, fail, run_binary

FLAGS = flags.FLAGS

flags.DEFINE_enum("dataset", "mnist5k", sorted(data.DATASETS), "Dataset.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")
flags.DEFINE_enum("optimizer", "adam", experiment.OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("learning_rate", 0.001, "Learning rate (> 0).")
flags.DEFINE_list("regularizers", [], "Comma list of l2, da, sc, bn; empty = none.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 factor (l2) and AdamW's decay.")
flags.DEFINE_integer("depth", 1, "Number of hidden layers (>= 1).")
flags.DEFINE_integer("dense_width", 308, "Hidden width of the dense model.")
flags.DEFINE_float("sparse_width_multiplier", 2.0,
                   "Sparse width = multiplier x dense width (>= 1).")
flags.DEFINE_enum("activation", "relu", ACTIVATIONS, "Hidden activation.")
flags.DEFINE_integer("epochs", 5, "Training epochs (>= 1).")
flags.DEFINE_integer("batch_size", 128, "Batch size (>= 1).")
flags.DEFINE_integer("seed", 0, "Seed of masks, init and data order.")
flags.DEFINE_enum("pruning", "random", experiment.PRUNING_METHODS,
                  "Pruning method of the sparse model.")
flags.DEFINE_integer("egf_points", 5, "Epochs at which EGF is measured on a "
                     "fixed batch set, spread evenly (1..epochs).")
flags.DEFINE_integer("egf_batches", 4, "Batches in the fixed EGF batch set.")
flags.DEFINE_enum("egf_data", "train", experiment.EGF_DATA,
                  "Data of the fixed EGF batch set.")
flags.DEFINE_integer(
    "gradient_flow_every", experiment.DEFAULT_GRADIENT_FLOW_EVERY,
    "Per-step gf/EGF (History, TensorBoard epoch_* scalars) on every N-th "
    "training step and the first of each epoch (>= 1; 1 = every step). The "
    "fixed-batch EGF points (--egf_points) are not affected.")
flags.DEFINE_bool("jit_compile", False, "Compile training steps with XLA.")
flags.DEFINE_enum("models", "both", experiment.MODEL_CHOICES, "Models to train.")
flags.DEFINE_string("output_dir", "runs/train", "Where results go (must be "
                    "empty or new, unless --overwrite).")
flags.DEFINE_bool("overwrite", False, "Replace a non-empty --output_dir (once "
                  "the new run has finished).")
flags.DEFINE_integer("verbose", 1, "Keras verbosity (0, 1 progress bar, 2).")


def _positive_finite(value):
    return value is not None and math.isfinite(value) and value > 0


flags.register_validator("learning_rate", _positive_finite,
                         message="--learning_rate must be a finite number > 0")
flags.register_validator("depth", lambda v: v is not None and v >= 1,
                         message="--depth must be >= 1")
flags.register_validator("dense_width", lambda v: v is not None and v >= 1,
                         message="--dense_width must be >= 1")
flags.register_validator("epochs", lambda v: v is not None and v >= 1,
                         message="--epochs must be >= 1")
flags.register_validator("batch_size", lambda v: v is not None and v >= 1,
                         message="--batch_size must be >= 1")
flags.register_validator(
    "sparse_width_multiplier", lambda v: v is not None and math.isfinite(v) and v >= 1,
    message="--sparse_width_multiplier must be a finite number >= 1")
flags.register_validator("gradient_flow_every",
                         lambda v: v is not None and v >= 1,
                         message="--gradient_flow_every must be >= 1")
flags.register_validator(
    "regularizers",
    lambda v: all(r in experiment.REGULARIZERS for r in v if r),
    message=f"--regularizers takes a comma list of {list(experiment.REGULARIZERS)}")
flags.register_multi_flags_validator(
    ["egf_points", "epochs"],
    lambda f: f["egf_points"] is not None and 1 <= f["egf_points"] <= f["epochs"],
    message="--egf_points must be in [1, --epochs]")


def config_from_flags():
    """A validated ComparisonConfig from the parsed flags."""
    return experiment.ComparisonConfig(
        dataset=FLAGS.dataset, optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate,
        regularizers=tuple(FLAGS.regularizers),
        weight_decay=FLAGS.weight_decay, depth=FLAGS.depth,
        dense_width=FLAGS.dense_width,
        sparse_width_multiplier=FLAGS.sparse_width_multiplier,
        activation=FLAGS.activation, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, seed=FLAGS.seed, pruning=FLAGS.pruning,
        egf_points=FLAGS.egf_points, egf_batches=FLAGS.egf_batches,
        egf_data=FLAGS.egf_data, data_dir=FLAGS.data_dir,
        gradient_flow_every=FLAGS.gradient_flow_every,
        jit_compile=FLAGS.jit_compile, models=FLAGS.models).validate()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}", exitcode=2)
    try:
        config = config_from_flags()
        results = experiment.run_comparison_into(
            config, FLAGS.output_dir, overwrite=FLAGS.overwrite,
            verbose=FLAGS.verbose)
    except (ValueError, data.DatasetNotPreparedError) as e:
        return fail("keras-egf-train", e)
    except KeyboardInterrupt:
        print(f"\nInterrupted: {FLAGS.output_dir} is as it was before this "
              "run (nothing of the run was kept).", flush=True)
        return EXIT_INTERRUPTED
    print(f"SC-SDC {config.dataset}: {experiment.summary_line(results)}")
    print(f"Results: {FLAGS.output_dir}/results.json, "
          f"{FLAGS.output_dir}/comparison.png; "
          f"tensorboard --logdir {FLAGS.output_dir}/tensorboard")
    return 0


def run():
    """Console-script entry point."""
    run_binary(main)


if __name__ == "__main__":
    run()
