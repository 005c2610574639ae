"""A stand-in for `experiment.run_comparison` that writes a valid
results.json at once (no training), for the sweep's recovery tests; run as a
script it runs a binary with it: `python tests/sweep_fakes.py sweep|train
FLAGS...`.

Environment (subprocesses):
- FAKE_HOLD=PATH: create PATH when a trial starts, then never finish it
  (a worker to kill mid-trial);
- FAKE_WAIT_FOR=PATH: wait (up to 120 s) for PATH before finishing a trial;
- FAKE_SIGINT_AT_RENAME=1: send this process SIGINT at its first os.rename
  (the commit of keras-egf-train's staging folder).
"""

import os
import signal
import sys
import time

CALLS = []


def fake_results(config, accuracy=0.5):
    """A results.json dict for `config` as a finished run writes it."""
    import keras_egf
    from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS

    names = ("sparse", "dense") if config.models == "both" else (config.models,)
    models = {name: {"diverged": False, "diverged_epoch": None,
                     "test_accuracy": accuracy, "test_loss": 1.0,
                     "average": {m: 1.0 for m in GRADIENT_FLOW_METRICS},
                     "history": {}, "epochs_run": 1}
              for name in names}
    return {"config": config.to_dict(),
            "versions": {"keras_egf": keras_egf.__version__},
            "dataset": {"num_classes": 10}, "models": models}


def fake_run_comparison(config, output_dir, **kwargs):
    from keras_egf import files

    CALLS.append(output_dir)
    print(f"fake trial started in {output_dir}", flush=True)
    if os.environ.get("FAKE_HOLD"):
        open(os.environ["FAKE_HOLD"], "w").close()
        time.sleep(3600)
    wait_for = os.environ.get("FAKE_WAIT_FOR")
    deadline = time.time() + 120
    while wait_for and not os.path.exists(wait_for) and time.time() < deadline:
        time.sleep(0.1)
    files.check_output_dir(output_dir)
    results = fake_results(config)
    files.write_json_atomic(os.path.join(output_dir, "results.json"), results)
    return results


def _sigint_at_first_rename():
    real = os.rename
    sent = []

    def rename(*args, **kwargs):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    os.rename = rename


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from keras_egf import experiment

    experiment.run_comparison = fake_run_comparison
    if os.environ.get("FAKE_SIGINT_AT_RENAME"):
        _sigint_at_first_rename()
    binary = sys.argv.pop(1)
    if binary == "sweep":
        from trainers import sweep as module
    else:
        from trainers import train as module
    sys.argv = [f"keras-egf-{binary}", *sys.argv[1:]]
    module.run()
