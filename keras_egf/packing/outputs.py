"""What a pack's members leave behind, in the format of unpacked runs.

A member's run records what `experiment.train_one`'s `fit` would: each
epoch's logs (its History), the fixed-batch EGF points (an `EGFCallback`,
with its TensorBoard run `egf`) and Keras's `TensorBoard` run `train`; the
packed trainer drives these callbacks (`MemberLogs`) in place of `fit`.
`point_results` then makes a point's results.json with the writers of
`keras_egf.results`.
"""

import os

import keras

from keras_egf import results as results_lib
from keras_egf.callbacks import EGFCallback


class MemberLogs:
    """One member's History, EGF points and TensorBoard runs (under
    `log_dir`: `train` and `egf`, none when `log_dir` is None), filled by
    the packed trainer epoch by epoch as `fit` fills an unpacked run's."""

    def __init__(self, model, config, egf_batches, log_dir=None):
        self.egf = EGFCallback(
            egf_batches, config.epochs, config.egf_points,
            log_dir=None if log_dir is None else os.path.join(log_dir, "egf"))
        self.tensorboard = None
        if log_dir is not None:
            self.tensorboard = keras.callbacks.TensorBoard(log_dir=log_dir,
                                                           write_graph=False)
        self.callbacks = [c for c in (self.egf, self.tensorboard) if c is not None]
        for callback in self.callbacks:
            callback.set_model(model)
        self.epochs = []  # each trained epoch's logs

    @property
    def history(self):
        """{key: [value per epoch]}, as Keras's History holds it (the
        fixed-batch keys at the evaluation epochs only)."""
        out = {}
        for logs in self.epochs:
            for key, value in logs.items():
                out.setdefault(key, []).append(value)
        return out

    def on_train_begin(self):
        for callback in self.callbacks:
            callback.on_train_begin()

    def on_epoch_end(self, epoch, logs, point=None):
        """Records `logs` ({key: float}) of a trained epoch and, at an
        evaluation epoch, its fixed-batch `point` (added to the logs, as
        `EGFCallback` adds it)."""
        if point is not None:
            self.egf.record(epoch, point, logs)
        self.epochs.append(logs)
        if self.tensorboard is not None:
            self.tensorboard.on_epoch_end(epoch, dict(logs))

    def on_train_end(self):
        for callback in self.callbacks:
            callback.on_train_end()


def member_result(member, train_time, test, eval_time):
    """The member's entry of its point's results.json; `test` its (test
    loss, test accuracy)."""
    egf = member.logs.egf
    result = results_lib.model_result(
        member.model, member.history, egf.points, egf.average, member.diverged,
        member.diverged_epoch, member.reason, 0, train_time)
    return results_lib.add_test_metrics(result, *test, eval_time)


def point_results(config, point, members, points, train_time, tests, eval_time):
    """results.json of the pack's point `point` (of `points`) without its
    wall time: the header of an unpacked run, a `packed` entry and its
    members' models; `tests` every member's (test loss, test accuracy)."""
    results = results_lib.results_header(config, members[0].datasets)
    results["packed"] = {"members": len(members), "points": points}
    for member in members:
        if member.point == point:
            results["models"][member.name] = member_result(
                member, train_time, tests[member.index], eval_time)
    return results
