"""keras_egf.packing.members: a packed model that mirrors its members'
graph, with their weights copied in and read back out."""

import types

import keras
import numpy as np
import pytest

from keras_egf import build_mlp
from keras_egf.packing import copy_in, member_weights, packed_model


@pytest.mark.parametrize("options", [
    dict(activation="prelu", skip_connections=True),
    dict(activation="sigmoid", batch_norm=True, weight_decay=1e-3)])
def test_packed_model_mirrors_the_members_graph(options):
    widths = ([5, 5], [8, 8])
    models = [build_mlp((6,), w, 3, seed=i, name=f"m{i}", **options)
              for i, w in enumerate(widths)]
    members = [types.SimpleNamespace(model=m) for m in models]
    packed = packed_model(members)
    names = [l.name for l in packed.layers]
    for layer in models[0].layers:  # every layer of build_mlp, by its own name
        assert layer.name in names
    assert [packed.get_layer(n).units for n in ("hidden_0", "hidden_1", "output")] == [8, 8, 3]
    if options.get("weight_decay"):
        assert packed.get_layer("output").kernel_regularizer is models[0].get_layer(
            "output").kernel_regularizer
    copy_in(packed, members)
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    out = keras.ops.convert_to_numpy(packed(np.stack([x, x], axis=1)))
    for k, model in enumerate(models):
        np.testing.assert_allclose(out[:, k], keras.ops.convert_to_numpy(model(x)),
                                   rtol=1e-5, atol=1e-6)
        got = member_weights(packed, members[k], k)
        for layer in model.layers:
            for a, b in zip(got.get(layer.name, []), layer.get_weights()):
                np.testing.assert_array_equal(a, b)
