r"""Writes the paper-style report of a sweep.

    keras-egf-report --sweep_dir=runs/smoke --output_dir=runs/smoke/report

Reads every trial's results.json and writes into --output_dir:
report.md (everything below, with the figures), correlations.md and
correlations.csv (Kendall's τ and Spearman's ρ between gf_1, gf_2, EGF_1,
EGF_2 averaged over training and test loss/accuracy, sparse and dense
separately, with p-values and n), wilcoxon.csv and the heatmaps
wilcoxon_optimizer_x_regularizer.png / wilcoxon_optimizer_x_activation.png
(one-sided Wilcoxon signed-rank p-values of H1: Sparse > Dense), and
width_<optimizer>.png (average EGF and test accuracy against dense width).
Diverged models are left out of the correlations and count at chance
accuracy in the Wilcoxon pairs (--diverged=exclude drops those pairs); an
unreadable or invalid results.json (keras_egf.results, the sweep's reader)
is listed as a failed trial (--strict: exit 2). Results of different grids
in one folder are refused (--allow_mixed_grids reports them together).
"""

from absl import app
from absl import flags

from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS
from trainers import fail, run_binary

FLAGS = flags.FLAGS
flags.DEFINE_string("sweep_dir", None, "The sweep's --output_dir (or any folder "
                    "holding results.json files).")
flags.DEFINE_string("output_dir", None, "Where the report goes "
                    "(default: SWEEP_DIR/report).")
flags.DEFINE_integer("min_pairs", 5, "Fewest matched pairs for a Wilcoxon cell; "
                     "cells with fewer show n<min_pairs.")
flags.DEFINE_enum("width_measure", "egf_2", list(GRADIENT_FLOW_METRICS),
                  "Measure plotted against dense width.")
flags.DEFINE_enum("diverged", "loss", ["loss", "exclude"],
                  "Wilcoxon pairs with a diverged model: count it at chance "
                  "accuracy (loss) or drop the pair (exclude).")
flags.DEFINE_bool("strict", False, "Fail on an unreadable results.json instead "
                  "of listing that trial as failed and reporting the rest.")
flags.DEFINE_bool("allow_mixed_grids", False, "Report the results of "
                  "different grids (sweeps whose grid.json differ, seeds aside) "
                  "together, naming each, instead of refusing them.")
flags.mark_flag_as_required("sweep_dir")
# write_report's arguments of the same name: its errors say them as flags
FLAG_ARGUMENTS = ("sweep_dir", "output_dir", "min_pairs", "width_measure",
                  "diverged", "strict", "allow_mixed_grids")
flags.register_validator("min_pairs", lambda v: v is not None and v >= 1,
                         message="--min_pairs must be >= 1")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}", exitcode=2)
    import os

    from keras_egf import report
    output_dir = (FLAGS.output_dir if FLAGS.output_dir is not None  # '' refused
                  else os.path.join(FLAGS.sweep_dir, "report"))
    try:
        out = report.write_report(FLAGS.sweep_dir, output_dir,
                                  min_pairs=FLAGS.min_pairs,
                                  width_measure=FLAGS.width_measure,
                                  diverged=FLAGS.diverged, strict=FLAGS.strict,
                                  allow_mixed_grids=FLAGS.allow_mixed_grids)
    except ValueError as e:
        return fail("keras-egf-report", e, flags=FLAG_ARGUMENTS)
    print(out["left_out"])
    print()
    print("Kendall's tau between gradient flow (averaged over training) and test "
          "performance:")
    print(out["table"])
    print()
    print(f"Wrote {', '.join(out['files'])} to {output_dir}")
    return 0


def run():
    """Console-script entry point."""
    run_binary(main)


if __name__ == "__main__":
    run()
