"""Writing a report into its folder: the files it writes, the old report's
files it removes first, and report.md put together from the sections."""

import fnmatch
import os

from keras_egf import validation
from keras_egf.files import check_output_dir
from keras_egf.files import write_text_atomic
from keras_egf.report import sections as sections_lib
from keras_egf.report.loading import load_sweep
from keras_egf.statistics import DEFAULT_MIN_PAIRS
from keras_egf.statistics import DIVERGED_TREATMENTS
from keras_egf.statistics import MEASURES
from keras_egf.statistics import correlation_markdown
from keras_egf.statistics import correlation_table
from keras_egf.statistics import diverged_treatment_text

# Every file `write_report` writes (names, or patterns where the name comes
# from the sweep). A previous report's files are removed before a new one is
# written, so that a folder never mixes two reports; nothing else is touched.
REPORT_FILES = ("report.md", "correlations.md", "correlations.csv", "wilcoxon.csv",
                "by_setting.csv", "sensitivity.csv", "wilcoxon_optimizer_x_*.png",
                "width_*.png")


def report_files(output_dir):
    """Sorted names of the report files (`REPORT_FILES`) in `output_dir`."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(n for n in os.listdir(output_dir)
                  if any(fnmatch.fnmatchcase(n, p) for p in REPORT_FILES)
                  and os.path.isfile(os.path.join(output_dir, n)))


def write_report(sweep_dir, output_dir, min_pairs=DEFAULT_MIN_PAIRS,
                 width_measure="egf_2", diverged="loss", strict=False,
                 allow_mixed_grids=False):
    """Writes the report files into `output_dir`; returns the markdown text.

    A previous report's files there (`REPORT_FILES`, e.g. the width plot of
    an optimizer this sweep does not have) are removed first; other files
    are left alone.

    `diverged`: "loss" (a diverged model counts at chance accuracy in the
    Wilcoxon pairs) or "exclude". `strict`: fail on an unreadable
    results.json instead of listing it as failed. `allow_mixed_grids`:
    report the results of different grids together, naming them, instead
    of refusing (`load_sweep`).
    """
    validation.one_of("width_measure", width_measure, MEASURES)
    validation.one_of("diverged", diverged, DIVERGED_TREATMENTS)
    sweep = load_sweep(sweep_dir, strict=strict, allow_mixed_grids=allow_mixed_grids)
    check_output_dir(output_dir)
    for name in report_files(output_dir):
        os.remove(os.path.join(output_dir, name))
    written = []
    corr = correlation_table(sweep)
    table = correlation_markdown(corr)
    left_out = sections_lib.left_out_text(sweep)
    lines = [f"# keras-egf report: {sweep_dir}", "", left_out, ""]
    lines += sections_lib.correlation_section(corr, output_dir, written)
    lines += sections_lib.wilcoxon_section(sweep, output_dir, min_pairs, diverged,
                                           written)
    lines += sections_lib.by_setting_sections(sweep, output_dir, written)
    lines += sections_lib.width_section(sweep, output_dir, width_measure, written)
    text = "\n".join(lines)
    write_text_atomic(os.path.join(output_dir, "correlations.md"), table + "\n")
    write_text_atomic(os.path.join(output_dir, "report.md"), text)
    return {"markdown": text, "table": table,
            "left_out": left_out + " " + diverged_treatment_text(diverged),
            "files": ["report.md", "correlations.md"] + written, "sweep": sweep}
