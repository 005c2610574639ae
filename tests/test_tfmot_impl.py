"""TFMOT's pruning_impl_test.py, ported to keras-egf.

Source: tensorflow_model_optimization/python/core/sparsity/keras/
pruning_impl_test.py (PruningTest), case by case, same weights, sparsities
and expected masks. TFMOT drives `pruning_impl.Pruning` on raw
(weight, mask, threshold) variables; keras-egf has no such object: the
weights live in masked layers, and a mask update is what
`UpdatePruningStep` does on a due step, `keras_egf.pruning.gradual.
update_masks(model, sparsity)` (M-by-N masks: set by `UpdatePruningStep` at
step 1, so those cases run a one-batch fit with learning rate 0).
"""

import keras
import numpy as np
import pytest

import keras_egf as ke
from keras_egf import pruning
from keras_egf.pruning import gradual


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


class Vector(keras.layers.Layer, ke.PrunableLayer):
    """A layer holding one prunable 1-D weight, TFMOT's `weight` variable
    (x * w)."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def build(self, input_shape):
        self.w = self.add_weight(shape=(self.size,), initializer="ones",
                                 name="w")

    def call(self, inputs):
        return inputs * self.w

    def get_prunable_weights(self):
        return [self.w]

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _vector_model(values, schedule):
    """A model whose only pruned weight holds `values` (TFMOT's
    `tf.Variable(values, name="weights")` with its mask)."""
    values = np.asarray(values, np.float32)
    model = keras.Sequential([
        keras.Input((values.size,)),
        ke.prune_low_magnitude(Vector(values.size), pruning_schedule=schedule),
    ])
    (entry,) = ke.prunable_layers(model)
    entry.kernel.assign(values)
    return model, entry


def _layer_model(layer, input_shape, weights, **params):
    """A model of one pruned built-in layer whose kernel is `weights`."""
    model = keras.Sequential([keras.Input(input_shape),
                              ke.prune_low_magnitude(layer, **params)])
    (entry,) = ke.prunable_layers(model)
    entry.kernel.assign(np.asarray(weights, np.float32))
    return model, entry


def _conditional_mask_update(model, schedule, step):
    """TFMOT's `Pruning.conditional_mask_update` at `step`: what
    UpdatePruningStep does on that step."""
    should_prune, sparsity = schedule(step)
    if should_prune:
        gradual.update_masks(model, sparsity)


class LinearSparsity(pruning.PruningSchedule):
    """testConditionalMaskUpdate's `linear_sparsity`: prune on every step,
    to the sparsity listed for that step."""

    VALUES = [0.0, 0.1, 0.1, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5]

    def __init__(self):
        super().__init__(begin_step=0, end_step=-1, frequency=1)

    def sparsity(self, step):
        return self.VALUES[step]


CONSTANT_SPARSITY = pruning.ConstantSparsity(0.5, 0, 100, 1)


def test_tfmot_testExtremelySparseMask():
    extreme_sparsity = pruning.ConstantSparsity(0.9999, 0, 100, 1)
    model, entry = _vector_model(np.linspace(1.0, 100.0, 100), extreme_sparsity)
    assert np.count_nonzero(entry.mask.numpy()) == 100

    _conditional_mask_update(model, extreme_sparsity, step=0)

    # We should always have a single connection remaining.
    assert np.count_nonzero(entry.mask.numpy()) == 1


def test_tfmot_testUpdateSingleMask():
    model, entry = _vector_model(np.linspace(1.0, 100.0, 100),
                                 CONSTANT_SPARSITY)
    assert np.count_nonzero(entry.mask.numpy()) == 100

    _conditional_mask_update(model, CONSTANT_SPARSITY, step=0)

    assert np.count_nonzero(entry.mask.numpy()) == 50


def test_tfmot_testConstructsMaskAndThresholdCorrectly():
    # Sparsity math often returns values with small tolerances.
    model, entry = _vector_model(np.arange(1, 11), None)
    gradual.update_masks(model, 0.200000018)

    # input matrix is [ 1.0, 2.0, ..., 8.0, 9.0, 10.0 ]
    np.testing.assert_array_equal(
        entry.mask.numpy(), np.concatenate((np.zeros(2), np.ones(8))))
    # keras-egf keeps no threshold variable (exact top-k): TFMOT's threshold
    # 3 is the smallest magnitude kept.
    kept = np.abs(entry.kernel.numpy())[entry.mask.numpy() > 0]
    assert kept.min() == 3


def _block_masking(block_size, block_pooling_type, weight, expected_mask):
    weight = np.asarray(weight, np.float32)
    model, entry = _layer_model(
        keras.layers.Dense(weight.shape[1], use_bias=False),
        (weight.shape[0],), weight, pruning_schedule=CONSTANT_SPARSITY,
        block_size=block_size, block_pooling_type=block_pooling_type)
    _conditional_mask_update(model, CONSTANT_SPARSITY, step=0)
    new_mask = entry.mask.numpy()
    # Check if the mask is the same size as the weights
    assert new_mask.shape == weight.shape
    np.testing.assert_array_equal(new_mask, expected_mask)


def test_tfmot_testBlockMaskingAvg():
    block_size = (2, 2)
    block_pooling_type = "AVG"
    weight = [[0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2],
              [0.3, 0.3, 0.4, 0.4], [0.3, 0.3, 0.4, 0.4]]
    expected_mask = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                     [1., 1., 1., 1.], [1., 1., 1., 1.]]

    _block_masking(block_size, block_pooling_type, weight, expected_mask)


def test_tfmot_testBlockMaskingMax():
    block_size = (2, 2)
    block_pooling_type = "MAX"
    weight = [[0.1, 0.0, 0.2, 0.0], [0.0, -0.1, 0.0, -0.2],
              [0.3, 0.0, 0.4, 0.0], [0.0, -0.3, 0.0, -0.4]]
    expected_mask = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                     [1., 1., 1., 1.], [1., 1., 1., 1.]]

    _block_masking(block_size, block_pooling_type, weight, expected_mask)


def test_tfmot_testBlockMaskingWithHigherDimensionsRaisesError():
    block_size = (2, 2)
    block_pooling_type = "AVG"
    # Weights as in testBlockMasking, but with one extra dimension: a
    # Conv1D kernel of size 1, shape (1, 4, 4).
    weight = [[[0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2],
               [0.3, 0.3, 0.4, 0.4], [0.3, 0.3, 0.4, 0.4]]]

    # Block masking should only be used with 2 Dimensional weights.
    with pytest.raises(ValueError):
        model, _ = _layer_model(
            keras.layers.Conv1D(4, 1, use_bias=False), (3, 4), weight,
            pruning_schedule=CONSTANT_SPARSITY, block_size=block_size,
            block_pooling_type=block_pooling_type)
        _conditional_mask_update(model, CONSTANT_SPARSITY, step=0)


def test_tfmot_testConditionalMaskUpdate():
    linear_sparsity = LinearSparsity()
    model, entry = _vector_model(np.linspace(1.0, 100.0, 100), linear_sparsity)

    non_zero_count = []
    for step in range(10):
        _conditional_mask_update(model, linear_sparsity, step)
        # TFMOT's weight_mask_op: keras-egf zeroes the pruned weights when
        # it sets a mask.
        non_zero_count.append(np.count_nonzero(entry.kernel.numpy()))

    # Weights pruned at steps 1,3,5
    expected_non_zero_count = [100, 90, 90, 70, 70, 50, 50, 50, 50, 50]
    assert non_zero_count == expected_non_zero_count


def _sparsity_m_by_n_masking(weight, m_by_n=(2, 4)):
    """The M-by-N mask keras-egf sets: UpdatePruningStep at step 1 (the
    first batch), in a one-batch fit that does not move the weights."""
    weight = np.asarray(weight, np.float32)
    if weight.ndim == 2:
        layer, input_shape = keras.layers.Dense(weight.shape[1],
                                                use_bias=False), weight.shape[:1]
    elif weight.ndim == 3:  # a Conv1D kernel (width, in, out)
        layer = keras.layers.Conv1D(weight.shape[2], weight.shape[0],
                                    use_bias=False)
        input_shape = (weight.shape[0], weight.shape[1])
    elif weight.ndim == 4:  # a Conv2D kernel (h, w, in, out)
        layer = keras.layers.Conv2D(weight.shape[3], weight.shape[:2],
                                    use_bias=False)
        input_shape = tuple(weight.shape[:3])
    else:  # 1-D: TFMOT's plain weight variable
        return _m_by_n_vector(weight, m_by_n)
    model, entry = _layer_model(layer, input_shape, weight,
                                pruning_schedule=CONSTANT_SPARSITY,
                                sparsity_m_by_n=m_by_n)
    _fit_one_batch(model)
    return entry.mask.numpy()


def _m_by_n_vector(weight, m_by_n):
    model = keras.Sequential([
        keras.Input(weight.shape),
        ke.prune_low_magnitude(Vector(weight.size),
                               pruning_schedule=CONSTANT_SPARSITY,
                               sparsity_m_by_n=m_by_n),
    ])
    (entry,) = ke.prunable_layers(model)
    entry.kernel.assign(weight)
    _fit_one_batch(model)
    return entry.mask.numpy()


def _fit_one_batch(model):
    model = ke.MaskedModel.wrap(model) if not isinstance(
        model, ke.MaskedModel) else model
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                  loss="mse")
    x = np.ones((1,) + tuple(model.inputs[0].shape[1:]), np.float32)
    y = np.zeros((1,) + tuple(model.outputs[0].shape[1:]), np.float32)
    model.fit(x, y, batch_size=1, epochs=1, verbose=0,
              callbacks=[pruning.UpdatePruningStep()])


@pytest.mark.parametrize(
    "weights,expected_mask,m_by_n",
    [
        ([[0.74, 0.68], [-0.89, -0.45], [-1.68, 1.24], [0.31, -0.6]],
         [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], (2, 4)),
        ([[[[-0.36, -0.77], [-0.43, -0.18], [0.12, 1.36], [0.77, 0.96]]]],
         [[[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]], (2, 4)),
        ([[[[-0.36, -0.77], [-0.43, -0.18], [0.12, 1.36], [0.77, 0.96]]]],
         [[[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]]], (1, 2)),
        ([[1.92, -0.21], [-0.19, 0.57], [1.1, -0.42]],
         [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], (2, 4)),
        ([[[[-0.37, 1.85], [0.82, 0.07], [1.17, 0.5]]]],
         [[[[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]]], (2, 4)),
    ],
    ids=["_2d_2by4", "_4d_2by4", "_4d_1by2", "_2d_2by4_pad", "_4d_2by4_pad"])
def test_tfmot_testSparsityMbyNMaskingSimple(weights, expected_mask, m_by_n):
    mask = _sparsity_m_by_n_masking(weights, m_by_n)
    np.testing.assert_array_equal(mask, np.asarray(expected_mask, np.float32))


@pytest.mark.parametrize("weights_shape", [[4], [4, 4, 4]],
                         ids=["_1d", "_3d"])
def test_tfmot_testSparsityMbyNMaskingSimpleRaises(weights_shape):
    weights = np.ones(weights_shape, np.float32)

    if len(weights_shape) == 3:
        # keras-egf takes M-by-N groups along the input axis (-2) of a
        # weight of any rank >= 2 (keras_egf/pruning/structured.py); TFMOT
        # only rearranges 2-D and 4-D weights and refuses the rest.
        mask = _sparsity_m_by_n_masking(weights)
        assert ke.is_pruned_m_by_n(mask, (2, 4))
        assert mask.sum() == weights.size // 2
        return
    with pytest.raises(ValueError):
        _sparsity_m_by_n_masking(weights)
