"""results.json: the one reader and check of its contents.

A run (`experiment.run_comparison`, `packing.run_packed`) writes one
results.json per sparse/dense pair. Whatever reads one back reads it here:
the report (`read`, with the settings it groups by), the sweep when it
resumes, re-queues or rebuilds its state (`read_finished`,
`finished_problem`: a finished result of one grid point), and its progress
line. So a file the report would not count is never taken for a finished
trial. Every refusal is a `ResultsError` saying whether the file could not
be read or was read and broke the schema.

The schema (`problems` lists every departure from it):
- a JSON object with a `config` object and a non-empty `models` object whose
  keys are "sparse" and/or "dense";
- each model an object; `diverged` (if present) a boolean. A model that did
  not diverge has a finite number `test_loss` and a finite number
  `test_accuracy` in [0, 1]; a diverged one has null (or no) test metrics;
- `average` (if present) an object of numbers or nulls (the gradient flow
  measures, null where not finite);
- the config's settings of the types `keras_egf.config` declares, together
  a valid config (`config.recorded_problems`; a setting an older keras-egf
  did not write counts as its default);
- `versions` and `dataset` (if present) objects; `dataset.num_classes` (if
  present) an integer >= 2.

The writing side (bottom of this module: `results_header`, `model_result`,
`add_test_metrics`) makes the files this schema describes, for both runs.
"""

import hashlib
import json
import math
import os
import platform

import keras
import numpy as np
import tensorflow as tf

import keras_egf
from keras_egf import backend as backend_lib
from keras_egf import config as config_lib
from keras_egf import files
from keras_egf.capacity import active_weights
from keras_egf.layers import prunable_layers
from keras_egf.pruning import get_masks

MODELS = ("sparse", "dense")
TARGETS = ("test_loss", "test_accuracy")


def is_number(value):
    """A finite int or float (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _model_problems(name, model):
    where = f"models.{name}"
    if not isinstance(model, dict):
        return [f"{where}: not an object"]
    out = []
    diverged = model.get("diverged", False)
    if not isinstance(diverged, bool):
        out.append(f"{where}.diverged: {diverged!r} is not true or false")
        diverged = False
    for target in TARGETS:
        value = model.get(target)
        if diverged:
            if value is not None:
                out.append(f"{where}.{target}: {value!r} on a diverged model "
                           "(expected null)")
        elif not is_number(value):
            out.append(f"{where}.{target}: " + (
                "missing" if target not in model else
                f"{value!r} is not a finite number"))
        elif target == "test_accuracy" and not 0 <= value <= 1:
            out.append(f"{where}.{target}: {value!r} is not in [0, 1]")
    average = model.get("average")
    if average is not None:
        if not isinstance(average, dict):
            out.append(f"{where}.average: not an object")
        else:
            out.extend(f"{where}.average.{k}: {v!r} is not a number or null"
                       for k, v in sorted(average.items())
                       if v is not None and not is_number(v))
    return out


def problems(results):
    """Every way a parsed results.json departs from the schema (module
    docstring), as `where: what` strings; [] for a valid one."""
    if not isinstance(results, dict):
        return ["not a JSON object"]
    out = []
    if not isinstance(results.get("config"), dict):
        out.append("config: " + ("missing" if "config" not in results
                                 else "not an object"))
    else:
        out.extend(config_lib.recorded_problems(results["config"]))
    models = results.get("models")
    if not isinstance(models, dict) or not models:
        out.append("models: " + ("missing" if "models" not in results else
                                 "empty" if models == {} else "not an object"))
    else:
        for name in sorted(models):
            if name not in MODELS:
                out.append(f"models.{name}: not a model name "
                           f"({' or '.join(MODELS)})")
            else:
                out.extend(_model_problems(name, models[name]))
    for key in ("versions", "dataset"):
        if key in results and not isinstance(results[key], dict):
            out.append(f"{key}: not an object")
    dataset = results.get("dataset")
    if isinstance(dataset, dict) and "num_classes" in dataset:
        n = dataset["num_classes"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            out.append(f"dataset.num_classes: {n!r} is not an integer >= 2")
    return out


class ResultsError(ValueError):
    """A results.json that cannot be used: `str()` is "PATH: text".

    `path`; `why`, the reason alone ("missing", "not valid JSON (...)", the
    schema's first problem "; and N more", "holds another configuration");
    `kind`: "unreadable" (missing, unreadable, not JSON), "invalid" (read,
    but not a keras-egf results file) or "mismatch" (a valid file, but not
    the result asked for, `read_finished`).
    """

    def __init__(self, path, why, kind):
        self.path, self.why, self.kind = path, why, kind
        super().__init__(f"{path}: {self.text}")

    @property
    def text(self):
        """The message without the path."""
        if self.kind == "invalid":
            return f"not a keras-egf results file ({self.why})"
        return self.why


def check(results, path="results.json"):
    """Returns `results` (a parsed results.json) if it is valid, else raises
    ResultsError `PATH: not a keras-egf results file (first problem[;
    ...])`."""
    found = problems(results)
    if found:
        more = f"; and {len(found) - 1} more" if len(found) > 1 else ""
        raise ResultsError(path, f"{found[0]}{more}", "invalid")
    return results


def read(path, required=(), required_because=None):
    """The checked results.json at `path`; ResultsError `PATH: why` when it
    is missing, unreadable, not JSON (`files.read_json`) or not valid
    (`check`), or when its config lacks one of the `required` settings
    (the reason `required_because` then follows the setting's name)."""
    try:
        results = files.read_json(path)
    except ValueError as e:
        prefix = f"{path}: "
        why = str(e)[len(prefix):] if str(e).startswith(prefix) else str(e)
        raise ResultsError(path, why, "unreadable") from None
    check(results, path)
    missing = [k for k in required if k not in results["config"]]
    if missing:
        because = f"; {required_because}" if required_because else ""
        raise ResultsError(path, f"config.{missing[0]}: missing{because}",
                           "invalid")
    return results


def library_version(results):
    """The keras_egf version a results dict records, or None."""
    versions = results.get("versions")
    return versions.get("keras_egf") if isinstance(versions, dict) else None


def saved_config(config_dict):
    """A results file's config as this version compares it: every setting
    of this version (one an older keras-egf did not write counts as its
    default value), in JSON's types (lists, not tuples)."""
    defaults = config_lib.ComparisonConfig().to_dict()
    return json.loads(json.dumps({k: config_dict.get(k, v)
                                  for k, v in defaults.items()}))


def read_finished(folder, config):
    """`folder`/results.json when it is a finished result of `config` (a
    `ComparisonConfig`): valid (`read`), of the same settings
    (`saved_config`) and holding each model `config.models` trains; else
    ResultsError."""
    path = os.path.join(folder, "results.json")
    results = read(path)
    if saved_config(results["config"]) != saved_config(config.to_dict()):
        raise ResultsError(path, "holds another configuration", "mismatch")
    for name in config.model_names:
        model = results["models"].get(name)
        if not isinstance(model, dict) or "test_accuracy" not in model:
            raise ResultsError(path, f"has no {name} model results", "mismatch")
    return results


def finished_problem(folder, config):
    """Why `folder`/results.json is not a finished result of `config`
    ("results.json why"), or None when it is one (`read_finished`)."""
    try:
        read_finished(folder, config)
    except ResultsError as e:
        return f"results.json {e.text}"
    return None


# --- writing ----------------------------------------------------------------
# What a run writes: `results_header` (config, versions, dataset, replicas,
# the gradient-flow scales), then per model `model_result` completed by
# `add_test_metrics`. `experiment.run_comparison` and `packing.run_packed`
# both write through these.

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


def versions():
    """Versions of what a result depends on."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "keras_egf": keras_egf.__version__,
            "numpy": np.__version__, "platform": platform.platform(),
            **backend_lib.description()}


def mask_digests(model):
    """{layer name: sha256 of its mask bytes} for masked layers."""
    return {name: hashlib.sha256(np.ascontiguousarray(m).tobytes()).hexdigest()
            for name, m in get_masks(model).items()}


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


def model_result(model, history, egf_points, average, diverged, diverged_epoch,
                 diverged_reason, mask_updates, train_time):
    """One trained model's entry of results.json, before its test metrics
    (`add_test_metrics`)."""
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
