"""Structured masks: M-by-N (m zeros in every n consecutive weights) and
blocks, from any scores (|w| for magnitude pruning), with TFMOT's layouts.

M-by-N groups run along the input dimension of a kernel, the
second-to-last axis (Dense [in, out], Conv2D [h, w, in, out], ...): for
every position of the other axes, each run of n consecutive inputs keeps
its n - m highest scores; a last, shorter run of r keeps min(r, n - m)
(TFMOT's `generate_m_by_n_mask`, which pads with zeros). 2:4 on a Dense
or Conv2D kernel is what sparse tensor cores accelerate.

Blocks (2-D weights only, as TFMOT): the scores are pooled over
(rows, cols) blocks ("AVG": mean over the block's entries inside the
weight, "MAX": max), the top blocks are kept to the target sparsity of
blocks, and every entry of a kept block is kept.
"""

import numpy as np

from keras_egf.pruning_options import check_block, check_m_by_n


def _rows_along_inputs(array):
    """`array` (rank >= 2) as rows of input-dimension values."""
    array = np.asarray(array)
    if array.ndim < 2:
        raise ValueError("M-by-N sparsity needs a weight of rank >= 2 (an "
                         "input and an output dimension). Received: "
                         f"shape={array.shape}")
    moved = np.moveaxis(array, -2, -1)
    return moved.reshape(-1, array.shape[-2]), moved.shape


def m_by_n_mask(scores, sparsity_m_by_n=(2, 4)):
    """0/1 float32 mask: in every n consecutive inputs, the n - m highest
    scores kept (ties: the first)."""
    m, n = check_m_by_n(sparsity_m_by_n)
    rows, moved_shape = _rows_along_inputs(scores)
    width = rows.shape[1]
    padded = -(-width // n) * n
    values = np.full((rows.shape[0], padded), -np.inf)
    values[:, :width] = rows
    # Padding ranks last: TFMOT pads |w| with zeros and breaks ties by
    # position, so a real weight always wins over padding there too.
    groups = values.reshape(rows.shape[0], padded // n, n)
    order = np.argsort(-groups, axis=-1, kind="stable")[..., :n - m]
    keep = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    mask = keep.reshape(rows.shape[0], padded)[:, :width]
    return np.moveaxis(mask.reshape(moved_shape), -1, -2).astype(np.float32)


def is_pruned_m_by_n(weights, m_by_n=(2, 4), last_channel="C_OUT"):
    """True if every n consecutive weights along the input dimension hold
    at least m zeros (TFMOT's `is_pruned_m_by_n`). `last_channel`: "C_OUT"
    for Keras kernels ([..., in, out]); "C_IN" for weights whose last axis
    is the input (TFLite's layout)."""
    num_zeros, num_elements = (int(v) for v in m_by_n)
    if num_zeros > num_elements:
        raise ValueError("number of zeros can't be more than number "
                         f"elements. Received: m_by_n={tuple(m_by_n)}")
    weights = np.asarray(weights)
    if last_channel.endswith("C_IN"):
        rows = weights.reshape(-1, weights.shape[-1])
    elif last_channel.endswith("C_OUT"):
        rows, _ = _rows_along_inputs(weights)
    else:
        raise ValueError("last_channel must be `C_IN` or `C_OUT`. "
                         f"Received: last_channel={last_channel!r}")
    keep = num_elements - num_zeros
    for start in range(0, rows.shape[1], num_elements):
        if (np.count_nonzero(rows[:, start:start + num_elements], axis=1)
                > keep).any():
            return False
    return True


def block_scores(scores, block_size, block_pooling_type="AVG"):
    """Scores pooled over blocks of a 2-D weight."""
    (rows, cols), pooling = check_block(block_size, block_pooling_type)
    values = np.asarray(scores, np.float64)
    if values.ndim != 2:
        raise ValueError("Block sparsity can only be used for layers which "
                         "have 2-dimensional weights. Received: weight of "
                         f"shape {np.shape(scores)}")
    h, w = values.shape
    ph, pw = -(-h // rows) * rows, -(-w // cols) * cols
    padded = np.full((ph, pw), np.nan)
    padded[:h, :w] = values
    blocks = padded.reshape(ph // rows, rows, pw // cols, cols)
    pool = np.nanmean if pooling == "AVG" else np.nanmax
    return pool(blocks, axis=(1, 3))


def expand_blocks(block_mask, block_size, shape):
    """A mask over blocks back to a mask of the weight's `shape`."""
    rows, cols = block_size
    full = np.kron(np.asarray(block_mask), np.ones((rows, cols)))
    return full[:shape[0], :shape[1]].reshape(shape).astype(np.float32)
