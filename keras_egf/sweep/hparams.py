"""What a sweep reports per trial: the metric schema the tuner's objective
and TensorBoard's HParams dashboard read, and the HParams runs it writes.

`METRICS` are the names; `trial_metrics` turns one comparison's results
into them; `write_hparams_config` writes the dashboard's experiment (the
grid's axes and the metrics) once per sweep, `write_hparams` one run per
grid point.
"""

import keras_tuner

from keras_egf.gradient_flow import GRADIENT_FLOW_METRICS

METRICS = tuple(f"{model}_{name}" for model in ("sparse", "dense")
                for name in ("test_accuracy", "test_loss") + tuple(
                    f"average_{m}" for m in GRADIENT_FLOW_METRICS)
                ) + ("sparse_minus_dense_accuracy",)


def trial_metrics(results):
    """Metrics dict of one comparison.

    A diverged model counts as accuracy 0 and loss 1e9 for the tuner's
    objective only; the report reads results.json and leaves it out.
    """
    out = {}
    for name in ("sparse", "dense"):
        r = results["models"].get(name, {})
        acc = r.get("test_accuracy")
        loss = r.get("test_loss")
        out[f"{name}_test_accuracy"] = float(acc) if acc is not None else 0.0
        out[f"{name}_test_loss"] = float(loss) if loss is not None else 1e9
        average = r.get("average") or {}
        for measure in GRADIENT_FLOW_METRICS:
            value = average.get(measure)
            out[f"{name}_average_{measure}"] = float(value) if value is not None else 0.0
    out["sparse_minus_dense_accuracy"] = (
        out["sparse_test_accuracy"] - out["dense_test_accuracy"])
    return out


def hyperparameters(grid):
    """Keras Tuner's search space of `grid`: one Choice per axis."""
    hp = keras_tuner.HyperParameters()
    for key, values in grid.axes.items():
        hp.Choice(key, values, ordered=False)
    return hp


def _hparam_value(value):
    return str(value) if isinstance(value, bool) else value


def write_hparams(log_dir, values, metrics):
    """One grid point's HParams run: its axis values and its metrics."""
    # TensorFlow and the HParams plugin load for seconds: only when writing.
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    with tf.summary.create_file_writer(log_dir).as_default():
        hp_api.hparams({k: _hparam_value(v) for k, v in values.items()})
        for name, value in metrics.items():
            tf.summary.scalar(name, value, step=0)


def write_hparams_config(log_dir, grid):
    """The HParams dashboard's experiment: the grid's axes and the metrics."""
    # TensorFlow and the HParams plugin load for seconds: only when writing.
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    hparams = [hp_api.HParam(key, hp_api.Discrete([_hparam_value(v) for v in values]))
               for key, values in grid.axes.items()]
    metrics = [hp_api.Metric(name) for name in METRICS]
    with tf.summary.create_file_writer(log_dir).as_default():
        hp_api.hparams_config(hparams=hparams, metrics=metrics)
