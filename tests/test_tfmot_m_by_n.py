"""The M-by-N parts of TFMOT's pruning_utils_test.py, ported case by case.

Source: tensorflow/model-optimization,
tensorflow_model_optimization/python/core/sparsity/keras/pruning_utils_test.py
(classes GenerateMbyNMaskTest, IsPrunedMbyNTest, WeightsRearrangeTest,
MbyNSparsityMaskPrepareTest; the block-pooling / expand-tensor classes are
not M-by-N and not ported here).

Layouts. TFMOT's M-by-N helpers work on rank-2 weights in TFLite's layout
([C_OUT, C_IN]: groups of n run along the last axis), reached from a Keras
kernel by `weights_rearrange` and mapped back by
`m_by_n_sparsity_mask_prepare`. keras-egf's `m_by_n_mask(scores, (m, n))`
works on the Keras kernel itself ([..., C_IN, C_OUT]: groups along the
second-to-last axis) and takes scores, not weights. So TFMOT's
`generate_m_by_n_mask(w, mn)` is `m_by_n_mask(abs(w).T, mn).T` here: same
inputs, same expected masks.
"""

import keras
import numpy as np
import pytest

import keras_egf as ke
from keras_egf.pruning import structured

glorot_uniform_initializer = keras.initializers.GlorotUniform


def _glorot(shape, seed=0):
    return keras.ops.convert_to_numpy(
        glorot_uniform_initializer(seed=seed)(shape))


def generate_m_by_n_mask(weights, m_by_n=(2, 4)):
    """TFMOT's generate_m_by_n_mask (TFLite layout, weights) through
    keras-egf's m_by_n_mask (Keras layout, scores)."""
    scores = np.abs(np.asarray(weights, np.float64))
    return structured.m_by_n_mask(scores.T, m_by_n).T


# GenerateMbyNMaskTest.

@pytest.mark.parametrize("weights, m_by_n, expected_mask", [
    pytest.param([[1.24], [1.11]], (2, 4), [[1], [1]],
                 id="wt_2x1_mbyn_2x4"),
    pytest.param([[-0.49, -0.66, 0.42], [0.31, 0.63, -1.63]], (2, 4),
                 [[1, 1, 0], [0, 1, 1]], id="wt_2x3_mbyn_2x4"),
    pytest.param([[-0.49, -0.66, 0.42], [0.31, 0.63, -1.63]], (1, 2),
                 [[0, 1, 1], [0, 1, 1]], id="wt_2x3_mbyn_1x2"),
    pytest.param([[0.25, -1.33, 0.43, -0.11], [0.47, 0.92, -0.13, -2.23]],
                 (2, 4), [[0, 1, 1, 0], [0, 1, 0, 1]], id="wt_2x4_mbyn_2x4"),
    pytest.param([[1.71, -0.27, -0.3, -0.61, -0.19],
                  [-0.4, 1.12, 0.46, -1.12, 0.17]], (3, 5),
                 [[1, 0, 0, 1, 0], [0, 1, 0, 1, 0]], id="wt_2x5_mbyn_3x5"),
])
def test_tfmot_generate_m_by_n_mask(weights, m_by_n, expected_mask):
    mask = generate_m_by_n_mask(weights, m_by_n)
    np.testing.assert_array_equal(mask, expected_mask)


@pytest.mark.parametrize("m_by_n", [(4, 4), (5, 4)])
def test_tfmot_generate_m_by_n_mask_raise(m_by_n):
    weights = _glorot([2, 5])
    # Deliberate difference: ValueError (numpy, checked before any work)
    # where TFMOT's tf.debugging.assert_less raises InvalidArgumentError.
    with pytest.raises(ValueError, match="0 < m < n"):
        generate_m_by_n_mask(weights, m_by_n)


# IsPrunedMbyNTest (testIsPruned2by4).

@pytest.mark.parametrize("weight, last_channel, expected, m_by_n", [
    ([[1, 2, 0, 0]], "C_OUT", True, (2, 4)),
    ([[1, 2, 0, 0]], "C_OUT", False, (1, 2)),
    ([[1, 0, 2, 0]], "C_OUT", True, (1, 2)),
    ([[1, 2, 3, 4]], "C_OUT", False, (2, 4)),
    ([[0, 0, 0, 0]], "C_OUT", True, (2, 4)),
    ([[1, 2, 0, 4], [0, 0, 1, 2]], "C_OUT", False, (2, 4)),
    ([[1, 2, 0, 0], [0, 0, 0, 1], [0, 2, 1, 0]], "C_OUT", True, (2, 4)),
    ([[1, 2, 0, 0], [1, 0, 0, 1], [0, 2, 1, 0]], "C_IN", True, (2, 4)),
    ([[1, 2, 3, 4, 5, 6]], "C_OUT", False, (2, 4)),
    ([[1, 2, 0, 0, 5, 6]], "C_OUT", True, (2, 4)),
    ([[1, 2, 0, 0, 5, 6, 7]], "C_OUT", False, (2, 4)),
    ([[1, 2, 0, 0, 5, 6, 0]], "C_OUT", True, (2, 4)),
])
def test_tfmot_is_pruned_2by4(weight, last_channel, expected, m_by_n):
    # As TFMOT: the rows are given in TFLite's layout; C_OUT transposes them
    # to a Keras kernel.
    weight = np.asarray(weight)
    if last_channel == "C_OUT":
        weight = weight.T
    answer = ke.is_pruned_m_by_n(weight, m_by_n, last_channel)
    assert answer is expected


# WeightsRearrangeTest. keras-egf's counterpart of weights_rearrange is the
# (private) `structured._rows_along_inputs`: the kernel as rows of C_IN
# values, the rows M-by-N groups run along.

@pytest.mark.parametrize("shape, expected_shape", [
    ([4, 3], [3, 4]),
    ([5, 5, 3, 4], [100, 3]),
])
def test_tfmot_weights_rearrange(shape, expected_shape):
    weights = keras.Variable(_glorot(shape), name="weights")
    prepared_wt, _ = structured._rows_along_inputs(weights.numpy())
    assert list(prepared_wt.shape) == expected_shape


@pytest.mark.parametrize("shape", [[2], [2, 2, 2]])
def test_tfmot_weights_rearrange_raise(shape):
    weights = keras.Variable(_glorot(shape), name="weights")
    if len(shape) == 1:
        with pytest.raises(ValueError):
            structured._rows_along_inputs(weights.numpy())
        return
    # Deliberate difference: rank-3 kernels (Conv1D: [width, C_IN, C_OUT])
    # get M-by-N masks in keras-egf; TFMOT supports rank 2 and 4 only.
    prepared_wt, _ = structured._rows_along_inputs(weights.numpy())
    assert list(prepared_wt.shape) == [4, 2]


# MbyNSparsityMaskPrepareTest. keras-egf has no mask-prepare step:
# m_by_n_mask returns the mask in the weight's own shape. The cases check
# that this mask is TFMOT's rearrange -> generate -> prepare result.

def _tfmot_mask_in_keras_layout(weights, m_by_n=(2, 4)):
    """TFMOT's pipeline in numpy: weights_rearrange, generate_m_by_n_mask,
    m_by_n_sparsity_mask_prepare."""
    if weights.ndim == 2:
        rows = weights.T
    else:  # rank 4: [H, W, C_IN, C_OUT] -> [C_OUT * H * W, C_IN]
        rows = np.transpose(weights, (3, 0, 1, 2)).reshape(-1, weights.shape[2])
    padded_width = (rows.shape[1] // m_by_n[1] + 1) * m_by_n[1]
    padded = np.zeros((rows.shape[0], padded_width))
    padded[:, :rows.shape[1]] = np.abs(rows)
    blocks = padded.reshape(-1, m_by_n[1])
    keep = np.zeros_like(blocks)
    top = np.argsort(-blocks, axis=-1, kind="stable")[:, :m_by_n[1] - m_by_n[0]]
    np.put_along_axis(keep, top, 1.0, axis=-1)
    mask = keep.reshape(padded.shape)[:, :rows.shape[1]]
    if weights.ndim == 2:
        return mask.T
    h, w, c_in, c_out = weights.shape
    return np.transpose(mask.reshape(c_out, h, w, c_in), (1, 2, 3, 0))


@pytest.mark.parametrize("mask_shape, weights_shape", [
    ([4, 4], [2, 2, 4, 1]),
    ([2, 4], [4, 2]),
])
def test_tfmot_m_by_n_sparsity_mask_prepare(mask_shape, weights_shape):
    weights = _glorot(weights_shape, seed=1)
    mask = structured.m_by_n_mask(np.abs(weights), (2, 4))
    assert list(mask.shape) == weights_shape
    assert int(np.prod(mask_shape)) == mask.size
    np.testing.assert_array_equal(mask, _tfmot_mask_in_keras_layout(weights))
    assert ke.is_pruned_m_by_n(weights * mask, (2, 4), "C_OUT")


def _masked_layer(weights_shape):
    """A built masked layer whose kernel has `weights_shape`."""
    if len(weights_shape) == 2:
        layer = ke.MaskedDense(weights_shape[1])
        layer.build((None, weights_shape[0]))
    elif len(weights_shape) == 3:
        layer = ke.prune_low_magnitude(
            keras.layers.Conv1D(weights_shape[2], weights_shape[0]))
        layer.build((None, 8, weights_shape[1]))
    else:
        layer = ke.MaskedConv2D(weights_shape[3], weights_shape[:2])
        layer.build((None, 8, 8, weights_shape[2]))
    return layer


@pytest.mark.parametrize("mask_shape, weights_shape, tfmot_error", [
    ([2, 2], [2, 1], "InvalidArgumentError"),
    ([4, 4, 1], [2, 2, 4, 1], "ValueError"),
    ([4, 4], [2, 2, 4], "ValueError"),
])
def test_tfmot_m_by_n_sparsity_mask_prepare_raise(mask_shape, weights_shape,
                                                  tfmot_error):
    # keras-egf's place where a mask meets a weight of another shape is
    # set_mask, which refuses it with ValueError (TFMOT's first case raises
    # InvalidArgumentError from a tf.debugging assertion).
    layer = _masked_layer(weights_shape)
    entry = ke.prunable_layers(keras.Sequential([layer]))[0]
    assert list(entry.kernel.shape) == weights_shape
    with pytest.raises(ValueError, match="shape"):
        entry.set_mask(np.ones(mask_shape))
    if len(weights_shape) == 3:
        # Deliberate difference: TFMOT refuses rank-3 weights for M-by-N;
        # keras-egf gives a rank-3 kernel (Conv1D) its M-by-N mask.
        mask = structured.m_by_n_mask(np.abs(entry.kernel.numpy()), (2, 4))
        assert list(mask.shape) == weights_shape
