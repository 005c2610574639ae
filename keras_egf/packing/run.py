"""`run_packed`: one pack of grid points, trained and written."""

import os
import time

from keras_egf import files
from keras_egf.packing.grouping import check_one_pack
from keras_egf.packing.members import build_members
from keras_egf.packing.outputs import point_results
from keras_egf.packing.trainer import PackedTrainer


def run_packed(configs, output_dirs, verbose=0, trainer_out=None):
    """Trains the points `configs` (one shared `pack_key`) as one pack and
    writes each point's results.json and TensorBoard runs into its
    `output_dirs` entry, in the format of `experiment.run_comparison`.
    Returns the points' results. `trainer_out` (a list) receives the
    PackedTrainer, for inspection."""
    check_one_pack(configs)
    if len(output_dirs) != len(configs):
        raise ValueError(f"`output_dirs` must hold one folder per config "
                         f"({len(configs)} configs). Received: "
                         f"{len(output_dirs)} output_dirs")
    for d in output_dirs:
        files.check_output_dir(d)
    members = build_members(configs, output_dirs)
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
        results = point_results(config, p, members, len(configs), train_time,
                                tests, eval_time)
        results["wall_time_s"] = time.perf_counter() - start
        files.write_json_atomic(os.path.join(out, "results.json"), results)
        all_results.append(files.finite_or_none(results))
    return all_results
