"""TFMOT's "Pruning in Keras" tutorial with keras-egf on Keras 3 and with
TFMOT on tf-keras, on the same data, side by side.

The tutorial (tensorflow.org/model_optimization/guide/pruning/
pruning_with_keras): a small convnet on MNIST, trained 4 epochs; pruned
with PolynomialDecay(0.50 -> 0.80, begin_step=0, end_step=ceil(n_train /
128) * 2) for 2 epochs (batch 128, validation_split 0.1, UpdatePruningStep
+ PruningSummaries); strip_pruning; zip-deflated sizes of the baseline and
pruned .h5 files; TFLite of the stripped model, then with post-training
quantisation (Optimize.DEFAULT); accuracy of the TFLite models.

Both sides run one function (`tutorial_flow`), given `keras` and the
pruning API: keras-egf (`keras`, `keras_egf`) in this process, TFMOT
(`tf.keras` = tf-keras, `tfmot.sparsity.keras`) in a subprocess with
TF_USE_LEGACY_KERAS=1 (importing TFMOT switches tf.keras to tf-keras for
its whole process). Same data (the bundled MNIST subset, keras_egf.data's
4,000 / 1,000 split), same seed, same initial weights (drawn in Keras 3,
loaded into the tf-keras model).

One change to the tutorial: its schedule keeps TFMOT's default frequency
(100 steps), which on 60,000 images (844 pruning steps) prunes 8 times, the
last at step 800. Here the pruning phase has 58 steps (3,600 training
images after the validation split, batch 128, 2 epochs), and the first
batch is step 1, so frequency 100 would never prune. The frequency is the
largest divisor of end_step that still gives the tutorial's 8 updates or
more (2 here: 29 updates), so the last update falls on end_step and both
libraries must reach 80 %.

    python -m benchmarks.tutorial [--quick] [--keras-egf-only] [--no-write]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

from benchmarks.common import print_and_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS_TUTORIAL.md")
COMMAND = "python -m benchmarks.tutorial"

SEED = 0
BATCH = 128
VALIDATION_SPLIT = 0.1
INITIAL_SPARSITY, FINAL_SPARSITY = 0.50, 0.80
TUTORIAL_UPDATES = 8  # TFMOT's frequency 100 on the tutorial's 844 steps
FULL = {"n_train": None, "n_test": None, "base_epochs": 4, "prune_epochs": 2}
QUICK = {"n_train": 1024, "n_test": 200, "base_epochs": 1, "prune_epochs": 2}


def load_data(n_train=None, n_test=None):
    """(x_train, y_train, x_test, y_test) of the bundled MNIST subset as the
    tutorial has them: (n, 28, 28) float32 in [0, 1], int labels; the first
    `n_train` / `n_test` images when given."""
    from keras_egf.data import mnist5k_arrays

    x_tr, y_tr, x_te, y_te = mnist5k_arrays()
    def images(x, n):
        return (x[:n, ..., 0] / 255.0).astype(np.float32)
    return (images(x_tr, n_train), np.array(y_tr[:n_train]),
            images(x_te, n_test), np.array(y_te[:n_test]))


def end_step(n_train, epochs, batch_size=BATCH, validation_split=VALIDATION_SPLIT):
    """The tutorial's end_step: ceil(n_train * (1 - split) / batch) * epochs."""
    return int(np.ceil(n_train * (1 - validation_split) / batch_size)) * epochs


def pruning_frequency(end, updates=TUTORIAL_UPDATES):
    """The largest divisor of `end` giving at least `updates` mask updates
    (1 when `end` < `updates`): the last update falls on `end`."""
    return max(d for d in range(1, max(1, end // updates) + 1) if end % d == 0)


def kept_target(size, sparsity=FINAL_SPARSITY):
    """Weights TFMOT keeps of `size` at `sparsity`: max(1, round(size * (1 -
    sparsity))), computed in float32 as its pruning_impl does."""
    return max(1, int(np.round(np.float32(size) * (np.float32(1) - np.float32(sparsity)))))


def zipped_size(path):
    """Bytes of `path` zip-deflated, as the tutorial's get_gzipped_model_size
    (the archive member named by the file's base name)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.zip")
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as f:
            f.write(path, arcname=os.path.basename(path))
        return os.path.getsize(out)


def build_model(keras):
    """The tutorial's convnet."""
    return keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Reshape(target_shape=(28, 28, 1)),
        keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])


def kernel_sparsities(model):
    """{layer class: {"name", "size", "kept", "sparsity", "negative_zeros"}}
    of every layer with a kernel (one of each class in the tutorial's model;
    names differ between processes), counting its non-zero kernel entries
    and its zeros stored as -0.0."""
    out = {}
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        values = np.asarray(kernel.numpy())
        kept = int(np.count_nonzero(values))
        out[type(layer).__name__] = {
            "name": layer.name, "size": int(values.size), "kept": kept,
            "sparsity": 1 - kept / values.size,
            "negative_zeros": int(np.count_nonzero((values == 0) & np.signbit(values)))}
    return out


def to_tflite(tf, model, quantize=False):
    """(TFLite flatbuffer, route): TFLiteConverter.from_keras_model, or, if
    it refuses the model, model.export + from_saved_model."""
    def convert(converter):
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()
    try:
        return convert(tf.lite.TFLiteConverter.from_keras_model(model)), "from_keras_model"
    except Exception:  # noqa: BLE001 - fall back to Keras 3's export route
        with tempfile.TemporaryDirectory() as tmp:
            model.export(os.path.join(tmp, "saved_model"), verbose=False)
            return (convert(tf.lite.TFLiteConverter.from_saved_model(
                os.path.join(tmp, "saved_model"))), "export + from_saved_model")


def tflite_accuracy(tf, flatbuffer, x, y):
    """The tutorial's evaluate_model: one image at a time through the
    TFLite interpreter, argmax of the logits."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    digits = []
    for image in x:
        interpreter.set_tensor(inp, image[None].astype(np.float32))
        interpreter.invoke()
        digits.append(int(np.argmax(interpreter.get_tensor(out)[0])))
    return float(np.mean(np.array(digits) == y))


def _tflite(tf, name, model, quantize, workdir, test, tflite, sizes, accuracies):
    """Converts `model`, writes workdir/<name>.tflite, records its
    flatbuffer, zip-deflated size and test accuracy; returns the route."""
    tflite[name], route = to_tflite(tf, model, quantize)
    path = os.path.join(workdir, name + ".tflite")
    with open(path, "wb") as f:
        f.write(tflite[name])
    sizes[name] = zipped_size(path)
    accuracies[name] = tflite_accuracy(tf, tflite[name], *test)
    return route


def tutorial_flow(keras, tf, api, data, workdir, base_epochs, prune_epochs,
                  initial_weights=None, seed=SEED, verbose=0, keras_format=False,
                  return_models=False):
    """The tutorial, with `keras` (Keras 3 or tf-keras) and `api` (an object
    with prune_low_magnitude, PolynomialDecay, UpdatePruningStep,
    PruningSummaries, strip_pruning: keras-egf's or tfmot.sparsity.keras).

    Returns a JSON-able dict (per-layer sparsity of the stripped model,
    accuracies, zip-deflated sizes, the TFLite route, seconds; the .keras
    files' sizes too with `keras_format`, for Keras 3), and with
    `return_models` also {"baseline", "pruned", "stripped", "callback"}.
    """
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = data
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keras.utils.set_random_seed(seed)
    model = build_model(keras)
    if initial_weights is not None:
        model.set_weights(initial_weights)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=base_epochs,
              validation_split=VALIDATION_SPLIT, verbose=verbose)
    _, baseline_accuracy = model.evaluate(x_test, y_test, verbose=0)
    baseline_file = os.path.join(workdir, "baseline.h5")
    keras.models.save_model(model, baseline_file, include_optimizer=False)
    sizes = {"baseline_h5": zipped_size(baseline_file)}
    files, tflite, accuracies = {}, {}, {}
    if keras_format:  # Keras 3's own format, without the optimizer's state
        files["baseline_keras"] = keras.models.clone_model(model)
        files["baseline_keras"].set_weights(model.get_weights())
    # Before pruning: TFMOT's wrappers hold the baseline's own layers, so
    # pruning changes the baseline model's weights too.
    _tflite(tf, "baseline_tflite", model, False, workdir, (x_test, y_test),
            tflite, sizes, accuracies)

    end = end_step(len(x_train), prune_epochs)
    frequency = pruning_frequency(end)
    schedule = api.PolynomialDecay(initial_sparsity=INITIAL_SPARSITY,
                                   final_sparsity=FINAL_SPARSITY, begin_step=0,
                                   end_step=end, frequency=frequency)
    pruned = api.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    update = api.UpdatePruningStep()
    pruned.fit(x_train, y_train, batch_size=BATCH, epochs=prune_epochs,
               validation_split=VALIDATION_SPLIT, verbose=verbose,
               callbacks=[update, api.PruningSummaries(
                   log_dir=os.path.join(workdir, "logs"))])
    _, pruned_accuracy = pruned.evaluate(x_test, y_test, verbose=0)

    stripped = api.strip_pruning(pruned)
    pruned_file = os.path.join(workdir, "pruned.h5")
    keras.models.save_model(stripped, pruned_file, include_optimizer=False)
    sizes["pruned_h5"] = zipped_size(pruned_file)
    if keras_format:
        files["pruned_keras"] = stripped
    for name, m in files.items():
        path = os.path.join(workdir, name + ".keras")
        m.save(path)
        sizes[name] = zipped_size(path)
    for name, quantize in (("pruned_tflite", False), ("pruned_quantized_tflite", True)):
        route = _tflite(tf, name, stripped, quantize, workdir, (x_test, y_test),
                        tflite, sizes, accuracies)
    # Diagnostic: w * mask stores a pruned negative weight as -0.0, whose
    # sign bit deflate has to encode; the same files with every zero +0.0.
    positive = keras.models.clone_model(stripped)
    positive.set_weights([np.where(w == 0, np.float32(0), w)
                          for w in stripped.get_weights()])
    path = os.path.join(workdir, "pruned_positive_zeros.h5")
    keras.models.save_model(positive, path, include_optimizer=False)
    sizes["pruned_h5_positive_zeros"] = zipped_size(path)
    _tflite(tf, "pruned_tflite_positive_zeros", positive, False, workdir,
            (x_test, y_test), tflite, sizes, {})
    results = {
        "keras": getattr(keras, "__version__", "?"), "tensorflow": tf.__version__,
        "n_train": len(x_train), "n_test": len(x_test),
        "base_epochs": base_epochs, "prune_epochs": prune_epochs,
        "end_step": end, "frequency": frequency,
        "layers": kernel_sparsities(stripped),
        "accuracy": {"baseline": float(baseline_accuracy),
                     "pruned": float(pruned_accuracy), **accuracies},
        "sizes": sizes, "tflite_route": route,
        "updates": [list(u) for u in getattr(update, "updates", [])],
        "seconds": time.perf_counter() - start,
    }
    if return_models:
        return results, {"baseline": model, "pruned": pruned,
                         "stripped": stripped, "callback": update}
    return results


def run_keras_egf(data, workdir, base_epochs, prune_epochs, verbose=0,
                  return_models=False):
    """The flow with keras-egf on Keras 3; also writes the initial weights
    to workdir/initial_weights.npz (the TFMOT side starts from them)."""
    import keras
    import tensorflow as tf

    import keras_egf as ke
    from keras_egf import pruning

    class Api:
        prune_low_magnitude = staticmethod(ke.prune_low_magnitude)
        strip_pruning = staticmethod(ke.strip_pruning)
        PolynomialDecay = pruning.PolynomialDecay
        UpdatePruningStep = pruning.UpdatePruningStep
        PruningSummaries = pruning.PruningSummaries

    keras.utils.set_random_seed(SEED)
    initial = build_model(keras).get_weights()
    np.savez(os.path.join(workdir, "initial_weights.npz"), *initial)
    return tutorial_flow(keras, tf, Api, data, workdir, base_epochs, prune_epochs,
                         initial_weights=initial, verbose=verbose,
                         keras_format=True, return_models=return_models)


def run_tfmot(data, workdir, base_epochs, prune_epochs, verbose=0, timeout=900):
    """The flow with TFMOT on tf-keras, in a subprocess
    (TF_USE_LEGACY_KERAS=1), from workdir/initial_weights.npz."""
    np.savez(os.path.join(workdir, "data.npz"), *data)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"base_epochs": base_epochs, "prune_epochs": prune_epochs,
                   "verbose": verbose}, f)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.tutorial", "--tfmot-worker", workdir],
        cwd=ROOT, env=env, timeout=timeout, text=True,
        stdout=None if verbose else subprocess.PIPE,
        stderr=None if verbose else subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"The TFMOT subprocess failed (exit {proc.returncode}):"
                           f"\n{(proc.stdout or '')[-3000:]}")
    with open(os.path.join(workdir, "tfmot.json")) as f:
        return json.load(f)


def _tfmot_worker(workdir):
    """Runs in the TF_USE_LEGACY_KERAS=1 subprocess: no keras_egf here."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    with np.load(os.path.join(workdir, "data.npz")) as f:
        data = tuple(f[f"arr_{i}"] for i in range(4))
    with np.load(os.path.join(workdir, "initial_weights.npz")) as f:
        initial = [f[f"arr_{i}"] for i in range(len(f.files))]
    results = tutorial_flow(tf.keras, tf, tfmot.sparsity.keras, data, workdir,
                            config["base_epochs"], config["prune_epochs"],
                            initial_weights=initial, verbose=config["verbose"])
    results["keras"] = tf_keras.__version__
    results["tfmot"] = getattr(tfmot, "__version__", "?")
    with open(os.path.join(workdir, "tfmot.json"), "w") as f:
        json.dump(results, f)


def ratios(sizes):
    """Compression ratios: the baseline .h5 over each pruned file, and the
    baseline TFLite over the pruned one."""
    base = sizes["baseline_h5"]
    return {"baseline .h5 / pruned .h5": base / sizes["pruned_h5"],
            "baseline .h5 / pruned TFLite": base / sizes["pruned_tflite"],
            "baseline .h5 / pruned quantised TFLite":
                base / sizes["pruned_quantized_tflite"],
            "baseline TFLite / pruned TFLite":
                sizes["baseline_tflite"] / sizes["pruned_tflite"]}


def report(ours, theirs=None):
    """RESULTS_TUTORIAL.md's text; `theirs` (TFMOT's results) may be None."""
    def cell(results, fn):
        return "–" if results is None else fn(results)

    def pct(v):
        return f"{100 * v:.2f} %"

    head = "| | keras-egf (Keras 3) | TFMOT (tf-keras) | keras-egf / TFMOT |"
    lines = [
        "# TFMOT's \"Pruning in Keras\" tutorial: keras-egf vs TFMOT", "",
        f"`{COMMAND}`: the tutorial's convnet on the bundled MNIST subset "
        f"({ours['n_train']} training images, of which {VALIDATION_SPLIT:.0%} "
        f"validation, {ours['n_test']} test), baseline {ours['base_epochs']} "
        f"epochs (batch 32, fit's default, as in the tutorial), then PolynomialDecay({INITIAL_SPARSITY:.2f} -> "
        f"{FINAL_SPARSITY:.2f}, begin_step=0, end_step={ours['end_step']}, "
        f"frequency={ours['frequency']}) for {ours['prune_epochs']} epochs "
        f"(batch {BATCH}). Both sides start from the same initial weights, "
        f"seed {SEED}. keras-egf: Keras {ours['keras']}, TensorFlow "
        f"{ours['tensorflow']}"
        + ("" if theirs is None else
           f"; TFMOT {theirs.get('tfmot', '?')}: tf-keras {theirs['keras']}, "
           "in a subprocess (TF_USE_LEGACY_KERAS=1)")
        + ". Frequency: the tutorial's 100 never fires in "
        f"{ours['end_step']} steps (the first batch is step 1); "
        f"{ours['frequency']} is the largest divisor of end_step giving "
        f"at least the tutorial's {TUTORIAL_UPDATES} updates, so the last "
        "update is at end_step.", "",
        f"TFLite: `TFLiteConverter.from_keras_model` of the stripped model; "
        f"on Keras 3 the route that worked: `{ours['tflite_route']}`.", "",
        "## Final sparsity of each pruned layer (kernel of the stripped model)",
        "", "| layer (class) | kernel weights | target kept (round(0.2·n)) "
        "| keras-egf kept | keras-egf sparsity | TFMOT kept | TFMOT sparsity "
        "| zeros stored as -0.0, keras-egf / TFMOT |",
        "|---|---|---|---|---|---|---|---|"]
    for name, layer in ours["layers"].items():
        other = None if theirs is None else theirs["layers"].get(name)
        lines.append(
            f"| {name} | {layer['size']} | {kept_target(layer['size'])} "
            f"| {layer['kept']} | {pct(layer['sparsity'])} "
            f"| {'–' if other is None else other['kept']} "
            f"| {'–' if other is None else pct(other['sparsity'])} "
            f"| {layer['negative_zeros']} / "
            f"{'–' if other is None else other['negative_zeros']} |")
    lines += ["", "## Test accuracy", "", head, "|---|---|---|---|"]
    for key, label in (("baseline", "baseline (Keras)"), ("pruned", "pruned (Keras)"),
                       ("baseline_tflite", "baseline TFLite"),
                       ("pruned_tflite", "pruned TFLite"),
                       ("pruned_quantized_tflite", "pruned + quantised TFLite")):
        a = ours["accuracy"][key]
        lines.append(f"| {label} | {a:.4f} | "
                     + cell(theirs, lambda r: f"{r['accuracy'][key]:.4f}")
                     + " | " + cell(theirs, lambda r: f"{a - r['accuracy'][key]:+.4f}")
                     + " |")
    lines += ["", "## Zip-deflated file sizes (bytes; the tutorial's "
              "get_gzipped_model_size)", "", head, "|---|---|---|---|"]
    for key, label in (("baseline_h5", "baseline .h5"), ("pruned_h5", "pruned, stripped .h5"),
                       ("baseline_keras", "baseline .keras (Keras 3's format)"),
                       ("pruned_keras", "pruned, stripped .keras"),
                       ("baseline_tflite", "baseline TFLite"),
                       ("pruned_tflite", "pruned TFLite"),
                       ("pruned_quantized_tflite", "pruned + quantised TFLite"),
                       ("pruned_h5_positive_zeros", "pruned .h5, every zero +0.0 "
                        "(diagnostic)"),
                       ("pruned_tflite_positive_zeros", "pruned TFLite, every zero "
                        "+0.0 (diagnostic)")):
        s = ours["sizes"][key]
        other = None if theirs is None else theirs["sizes"].get(key)
        lines.append(f"| {label} | {s} | {'–' if other is None else other} | "
                     f"{'–' if other is None else f'{s / other:.3f}'} |")
    lines += ["", "## Compression ratios", "", head, "|---|---|---|---|"]
    mine = ratios(ours["sizes"])
    other = None if theirs is None else ratios(theirs["sizes"])
    for label, r in mine.items():
        lines.append(f"| {label} | {r:.2f}x | "
                     f"{'–' if other is None else f'{other[label]:.2f}x'} | "
                     f"{'–' if other is None else f'{r / other[label]:.3f}'} |")
    if ours["updates"]:
        (first, s0), (last, s1) = ours["updates"][0], ours["updates"][-1]
        lines += ["", f"keras-egf's UpdatePruningStep updated the masks "
                  f"{len(ours['updates'])} times, from step {first} (sparsity "
                  f"{s0:.4f}) to step {last} (sparsity {s1:.4f})."]
    if theirs is not None:
        lines += ["", "## Zeros stored as -0.0", "", _sign_note(ours, theirs)]
    lines += ["", f"Wall time: keras-egf {ours['seconds']:.0f} s"
              + ("" if theirs is None else f", TFMOT {theirs['seconds']:.0f} s")
              + " (2 shared CPU cores)."]
    return "\n".join(lines) + "\n"


def _sign_note(ours, theirs):
    """Why the pruned float files differ in size: the signs of the zeros."""
    def zeros(r):
        return ", ".join(
            f"{l['negative_zeros']} of {l['size'] - l['kept']} in {name}"
            for name, l in r["layers"].items())

    def gap(key):
        return 100 * (ours["sizes"][key] / theirs["sizes"][key] - 1)

    return (
        "A pruned weight's zero can be stored as -0.0 (a sign bit deflate "
        "has to encode) or +0.0. keras-egf writes every pruned weight as "
        "+0.0. TFMOT multiplies the kernel variable by the mask (w * 0 keeps "
        "the sign of w) at every call, and the optimizer's steps still reach "
        "the pruned weights in between, so its zeros carry the sign of the "
        "last step. Zeros stored as -0.0: "
        f"keras-egf {zeros(ours)}; TFMOT {zeros(theirs)}. With every zero "
        "written as +0.0 (the diagnostic rows) the two libraries' pruned "
        f"files differ by {gap('pruned_h5_positive_zeros'):+.1f} % (.h5) and "
        f"{gap('pruned_tflite_positive_zeros'):+.1f} % (TFLite), against "
        f"{gap('pruned_h5'):+.1f} % and {gap('pruned_tflite'):+.1f} % as "
        "written (keras-egf / TFMOT - 1).")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['n_train']} training / {QUICK['n_test']} test "
                             "images, 1 baseline epoch; writes nothing")
    parser.add_argument("--keras-egf-only", action="store_true",
                        help="skip the TFMOT subprocess; writes nothing")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--tfmot-worker", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tfmot_worker:
        return _tfmot_worker(args.tfmot_worker)
    setting = QUICK if args.quick else FULL
    data = load_data(setting["n_train"], setting["n_test"])
    epochs = (setting["base_epochs"], setting["prune_epochs"])
    verbose = 0 if args.quick else 2
    with tempfile.TemporaryDirectory() as workdir:
        os.makedirs(os.path.join(workdir, "keras_egf"))
        os.makedirs(os.path.join(workdir, "tfmot"))
        print("keras-egf on Keras 3 ...", flush=True)
        ours = run_keras_egf(data, os.path.join(workdir, "keras_egf"), *epochs,
                             verbose=verbose)
        theirs = None
        if not args.keras_egf_only:
            print("TFMOT on tf-keras (subprocess) ...", flush=True)
            shutil.copy(os.path.join(workdir, "keras_egf", "initial_weights.npz"),
                        os.path.join(workdir, "tfmot"))
            theirs = run_tfmot(data, os.path.join(workdir, "tfmot"), *epochs,
                               verbose=verbose)
    # Only a full run of both sides replaces the results file.
    print_and_write(report(ours, theirs), RESULTS,
                    not (args.quick or args.keras_egf_only or args.no_write))
    return ours, theirs


if __name__ == "__main__":
    main()
