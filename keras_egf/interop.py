"""Models pruned with TFMOT's tf-keras API, brought into keras-egf.

TFMOT (tensorflow-model-optimization) works only with tf-keras, and
importing it switches `tf.keras` to tf-keras for the whole process. So
`from_tfmot` never imports it here: a subprocess with TF_USE_LEGACY_KERAS=1
loads the TFMOT model (inside `prune_scope`), reads each pruned layer's
mask, strips the pruning wrappers and saves the plain model as HDF5, which
Keras 3 reads; this process then rebuilds it with masked layers and the
same masks. Needs the `[tfmot]` extra (tensorflow-model-optimization,
tf-keras).
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

_EXPORT = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

source, folder = sys.argv[1], sys.argv[2]
with tfmot.sparsity.keras.prune_scope():
    model = tf.keras.models.load_model(source, compile=False)
masks = {}
for layer in model.layers:
    for weight, mask, _ in getattr(layer, "pruning_vars", []):
        if "kernel" in weight.name:
            masks[layer.layer.name] = mask.numpy()
plain = tfmot.sparsity.keras.strip_pruning(model)
plain.save(folder + "/model.h5")
np.savez(folder + "/masks.npz", **masks)
print(json.dumps(sorted(masks)))
"""


def from_tfmot(path, timeout=600):
    """A `MaskedModel` equal to the TFMOT-pruned tf-keras model saved at
    `path` (.h5 or .keras): same weights, same masks, same predictions, so
    its gradient flow can be measured.

    Raises ImportError naming the extra when TFMOT is not installed, and
    ValueError when the file cannot be read as a TFMOT model.
    """
    import importlib.util

    from keras_egf.pruning.conversion import prune_low_magnitude

    if importlib.util.find_spec("tensorflow_model_optimization") is None or \
            importlib.util.find_spec("tf_keras") is None:
        raise ImportError("from_tfmot needs tensorflow-model-optimization and "
                          "tf-keras: pip install -e '.[tfmot]' in a keras-egf "
                          "checkout")
    if not os.path.exists(path):
        raise ValueError(f"path={path!r}: no such file")
    import keras

    with tempfile.TemporaryDirectory(prefix="keras-egf-tfmot-") as folder:
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1",
                   TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        proc = subprocess.run([sys.executable, "-c", _EXPORT, os.path.abspath(path),
                               folder], capture_output=True, text=True,
                              timeout=timeout, env=env)
        if proc.returncode != 0:
            raise ValueError(f"path={path!r}: could not be read as a TFMOT model:\n"
                             + proc.stderr.strip().splitlines()[-1])
        names = json.loads(proc.stdout.strip().splitlines()[-1])
        plain = keras.models.load_model(os.path.join(folder, "model.h5"),
                                        compile=False)
        masks = dict(np.load(os.path.join(folder, "masks.npz")))
    pruned = {n for n in names}
    model = prune_low_magnitude(plain, exclude=[
        l.name for l in plain.layers
        if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D))
        and l.name not in pruned])
    model.pruning_schedule = None
    for name, mask in masks.items():
        model.get_layer(name).set_mask(mask)
    return model
