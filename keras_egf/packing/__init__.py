"""Packed training: many grid points' sparse/dense MLPs as one computation.

A sweep trial of the bundled grids is a small MLP pair whose time goes to
per-trial overhead (tracing, pipelines, writers, Python per step). Points
that share everything but their seed, learning rate and widths (`pack_key`)
can instead be trained together: every layer holds the K members' kernels
stacked, (K, fan_in, fan_out), and one batched matmul (einsum) runs them
all. Narrower members are padded to the widest with a *structural* mask,
which is never counted as a pruned weight: gf (which includes pruned
positions) is taken over each member's own kernel shape, EGF over its
pruning mask, so both stay each member's own.

Each member keeps what it would have alone:
- its initial weights and masks (built by the very code of an unpacked run,
  `keras_egf.experiment`, then copied in);
- its data order (its seed's pipeline; members are stacked along axis 1 of
  the batch, x of shape (batch, K, features));
- its objective: the packed loss is the sum of the members' mean losses
  (each with its own kernel regularizer), so each member's gradient is its
  own;
- its learning rate: members sharing one rate (all of a pack's, as on a
  grid without a learning-rate axis) train with the optimizer at that rate,
  as each would alone. Otherwise the optimizer runs at rate 1 and each
  member's step is scaled by its own rate afterwards. SGD, momentum,
  Adagrad, RMSProp, Adam and AdamW all move the weights by rate x (an
  update independent of the rate), so this is the same step; their
  momentum buffers then hold the unscaled update, which does not change
  the weights;
- its divergence handling: a member whose running epoch loss becomes NaN,
  Inf or exceeds 1e6 is frozen (rate 0) and recorded, the others go on;
- its fixed-batch EGF points, History, results.json and TensorBoard run, in
  the format of an unpacked run (`keras_egf.experiment.run_comparison`).

Equivalence: a member ends with the weights, metrics and gf/EGF of the same
point trained alone up to float rounding (batched matmuls sum in another
order; tests check 1e-5 after a few steps, and the smoke grid's report
agrees in every value). Over long runs the rounding differences stay small
where training is well conditioned and grow where it is chaotic (say
RMSProp without BatchNorm at a high learning rate), as they do between any
two float32 runs that sum in different orders, packed or not
(`benchmarks/packing.py` runs such a control beside the pack).

Supported: the MLP of `keras_egf.architectures` with relu, prelu, elu,
swish or sigmoid, any regularisers (NR, L2, DA, SC, BN), static masks from
any pruning method, one device.

Modules: `grouping` (which points pack together), `layers` (`PackedDense`),
`members` (each member built as an unpacked run builds it; the packed
model), `trainer` (`PackedTrainer`), `outputs` (what each member leaves
behind: History, EGF points, TensorBoard, results.json), `run`
(`run_packed`, one pack end to end).
"""

from keras_egf.packing.grouping import (
    MEMBER_FIELDS,
    PACKABLE_ACTIVATIONS,
    check_one_pack,
    check_packable,
    group_points,
    is_packable,
    pack_key,
)
from keras_egf.packing.layers import PackedDense
from keras_egf.packing.members import (
    Member,
    build_members,
    copy_in,
    member_weights,
    packed_model,
)
from keras_egf.packing.outputs import MemberLogs, member_result, point_results
from keras_egf.packing.run import run_packed
from keras_egf.packing.trainer import MAX_LOSS, PackedTrainer

__all__ = [
    "MAX_LOSS",
    "MEMBER_FIELDS",
    "PACKABLE_ACTIVATIONS",
    "Member",
    "MemberLogs",
    "PackedDense",
    "PackedTrainer",
    "build_members",
    "check_one_pack",
    "check_packable",
    "copy_in",
    "group_points",
    "is_packable",
    "member_result",
    "member_weights",
    "pack_key",
    "packed_model",
    "point_results",
    "run_packed",
]
