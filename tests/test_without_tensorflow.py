"""The core runs on Keras's JAX backend with TensorFlow absent (issue 25):
`pip install -e '.[jax]'` installs no TensorFlow, so `import keras_egf`,
pruning (SNIP), `fit` with per-step gf/EGF and the fixed-batch EGFCallback,
the TFMOT-style workflow (prune_low_magnitude, UpdatePruningStep,
strip_pruning) and .keras save/load must not import it. A subprocess blocks
every TensorFlow import and runs them; and the binaries, which need
TensorFlow, say which extra to install."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# As if not installed: `import tensorflow` raises ImportError and
# importlib.util.find_spec("tensorflow") is None (torch probes it).
BLOCK = textwrap.dedent("""
    import sys
    BLOCKED = ("tensorflow", "tf_keras", "keras_tuner", "tensorflow_datasets",
               "tensorboard")
    for _name in BLOCKED:
        sys.modules[_name] = None
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked " + name)
    sys.meta_path.insert(0, _Block())
""")

SCRIPT = BLOCK + textwrap.dedent("""
    import json, os, tempfile
    import numpy as np, keras
    import keras_egf as ke
    from keras_egf import callbacks as cb
    rng = np.random.default_rng(0)
    x = rng.random((64, 20), dtype=np.float32)
    y = (x.sum(1) > 10).astype("int32")
    m = ke.build_mlp((20,), [32, 32], 2, masked=True, seed=0,
                     track_gradient_flow=True, gradient_flow_every=1)
    ke.prune(m, 0.8, method="snip", batches=[(x, y)], seed=0)
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    h = m.fit(x, y, batch_size=16, epochs=2, verbose=0,
              callbacks=[cb.EGFCallback((x, y), epochs=2)])
    plain = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(2)])
    p = ke.prune_low_magnitude(plain, pruning_schedule=ke.pruning.PolynomialDecay(
        0.0, 0.5, 0, 4, frequency=1))
    p.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    p.fit(x, y, batch_size=16, epochs=1, verbose=0,
          callbacks=[ke.pruning.UpdatePruningStep()])
    s = ke.strip_pruning(p)
    d = tempfile.mkdtemp()
    m.save(os.path.join(d, "m.keras"))
    m2 = keras.models.load_model(os.path.join(d, "m.keras"))
    kernel = [l for l in ke.prunable_layers(m)][0]
    print(json.dumps({
        "backend": keras.backend.backend(),
        "tensorflow_imported": any(k.split(".")[0] == "tensorflow" and v is not None
                                   for k, v in sys.modules.items()),
        "history": sorted(h.history),
        "egf_2": h.history["egf_2"][-1],
        "fixed_batch_egf_2": h.history["fixed_batch_egf_2"][-1],
        "sparse_active": int(ke.active_weights(m)[kernel.name]),
        "sparse_total": int(np.prod(kernel.kernel.shape)),
        "gradual_sparsity": float(np.mean(s.layers[0].kernel.numpy() == 0)),
        "same_predictions": bool(np.allclose(m2.predict(x, verbose=0),
                                             m.predict(x, verbose=0))),
    }))
""")


def _run(code, backend="jax", **env):
    environment = dict(os.environ, KERAS_BACKEND=backend, **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_core_workflow_on_jax_imports_no_tensorflow(backend):
    # torch: where it is installed (the [torch] extra; CI does not install it)
    pytest.importorskip(backend)
    proc = _run(SCRIPT, backend, CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == backend and out["tensorflow_imported"] is False
    for name in ("gf_1", "gf_2", "egf_1", "egf_2", "fixed_batch_egf_2", "loss"):
        assert name in out["history"]
    assert out["egf_2"] > 0 and out["fixed_batch_egf_2"] > 0
    # SNIP at 80 % (global ranking): this layer keeps fewer than all weights
    assert 0 < out["sparse_active"] < out["sparse_total"]
    assert out["gradual_sparsity"] == pytest.approx(0.5, abs=1 / 640)
    assert out["same_predictions"] is True


def test_tensorboard_writing_and_binaries_name_the_tensorflow_extra():
    code = BLOCK + textwrap.dedent("""
        import numpy as np
        import keras_egf as ke
        from keras_egf import callbacks as cb
        m = ke.build_mlp((4,), [3], 2, masked=True, seed=0)
        m.compile("sgd", "sparse_categorical_crossentropy")
        x = np.ones((4, 4), "float32"); y = np.zeros(4, "int32")
        try:
            m.fit(x, y, epochs=1, verbose=0,
                  callbacks=[cb.EGFCallback((x, y), epochs=1, log_dir="/tmp/unused")])
        except ImportError as e:
            print("ERROR", e)
        from keras_egf import data
        print("MNIST5K", [a.shape[0] for a in data.mnist5k_arrays()])
        try:
            data.make_datasets("mnist5k")
        except ImportError as e:
            print("DATA", e)
    """)
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EGFCallback(log_dir=...) writes TensorBoard files" in proc.stdout
    assert "pip install -e '.[tensorflow]'" in proc.stdout
    # The bundled data as NumPy arrays; its tf.data pipelines name the extra.
    assert "MNIST5K [4000, 4000, 1000, 1000]" in proc.stdout
    assert ("DATA keras_egf.data.make_datasets builds tf.data pipelines and "
            "needs TensorFlow: pip install -e '.[tensorflow]'") in proc.stdout
    binary = BLOCK.replace("import sys\n", "import sys\nsys.argv = ['keras-egf-train']\n", 1) + (
        "import trainers.train\n")
    proc = _run(binary)
    assert proc.returncode == 1
    assert "keras-egf's binaries need TensorFlow" in proc.stderr
    assert "pip install -e '.[tensorflow]'" in proc.stderr
