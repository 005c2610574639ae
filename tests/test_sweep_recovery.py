"""Issue 27, points 1, 2, 3, 7, 8: sweeps that survive a lost worker, refuse
a second chief and a missing one, name and rebuild damaged state, check
resumed results as the report does, and leave nothing behind after Ctrl-C
or SIGKILL.

Trials here are `sweep_fakes.fake_run_comparison` (a valid results.json at
once, no training): what is tested is the sweep's bookkeeping. Chief and
workers run on 127.0.0.1 with short heartbeats and timeouts; every
subprocess has a time limit.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import sweep_fakes
from keras_egf import experiment
from keras_egf import files
from keras_egf import grid as grid_lib
from keras_egf import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKES = os.path.join(ROOT, "tests", "sweep_fakes.py")
TINY = {"dataset": "mnist5k", "dense_width": 8, "epochs": 1, "egf_points": 1,
        "egf_batches": 1, "batch_size": 512}
AXES = {"optimizer": ["sgd", "adam"], "activation": ["relu", "swish"]}


def _grid_file(tmp_path, axes=AXES):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"name": "g", "fixed": TINY, "grid": axes}))
    return path


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP",
                 "KERASTUNER_ORACLE_PORT"):
        env.pop(name, None)
    env.update(extra)
    return env


def _fake(binary, *flags):
    return [sys.executable, FAKES, binary, *map(str, flags)]


class _Process:
    """A subprocess whose output lines are collected as they come."""

    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for(self, text, timeout):
        deadline = time.time() + timeout
        while text not in self.output:
            assert self.proc.poll() is None or text in self.output, self.output[-3000:]
            assert time.time() < deadline, f"no {text!r} in:\n{self.output[-3000:]}"
            time.sleep(0.1)

    def wait(self, timeout):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout} s:\n"
                                 f"{self.output[-3000:]}") from None
        self._reader.join(timeout=10)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _distributed(port, role):
    return {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
            "KERASTUNER_TUNER_ID": role}


def _finished(out):
    return sorted(p.parent.name for p in out.glob("trial_*/results.json"))


# Point 1 ------------------------------------------------------------------

def test_a_killed_workers_trial_is_requeued_to_a_live_worker(tmp_path, free_port):
    """Chief + two workers; one is SIGKILLed in its trial after the other
    has finished every other point: the chief says it is waiting for that
    trial, re-queues it once the worker has been silent for
    --worker_timeout_s, the live worker runs it, and all exit 0."""
    grid = _grid_file(tmp_path)
    out = tmp_path / "sweep"
    flags = [f"--grid={grid}", f"--output_dir={out}", "--threads=1",
             "--heartbeat_s=0.5", "--worker_timeout_s=4", "--chief_timeout_s=120"]
    held = tmp_path / "held"
    procs = {}
    try:
        procs["chief"] = _Process(_fake("sweep", *flags), _env(**_distributed(free_port, "chief")))
        procs["tuner0"] = _Process(_fake("sweep", *flags), _env(
            FAKE_HOLD=str(held), **_distributed(free_port, "tuner0")))
        # tuner1 finishes nothing until tuner0 holds a trial, then the rest.
        procs["tuner1"] = _Process(_fake("sweep", *flags), _env(
            FAKE_WAIT_FOR=str(held), **_distributed(free_port, "tuner1")))
        deadline = time.time() + 240
        while len(_finished(out)) < 3:
            assert procs["chief"].proc.poll() is None, procs["chief"].output[-3000:]
            assert time.time() < deadline, {r: p.output[-2000:] for r, p in procs.items()}
            time.sleep(0.2)
        procs["tuner0"].kill()  # SIGKILL mid-trial
        assert procs["chief"].wait(timeout=120) == 0, procs["chief"].output[-3000:]
        assert procs["tuner1"].wait(timeout=60) == 0, procs["tuner1"].output[-3000:]
    finally:
        for p in procs.values():
            p.kill()
    lost = next(l for l in procs["tuner0"].lines if l.startswith("fake trial started"))
    lost = os.path.basename(lost.split()[-1])  # trial_<id>
    chief = procs["chief"].output
    assert f"Chief: 3/4 trials finished; waiting for {lost} (tuner0, heard from" in chief
    assert f"Chief: {lost} re-queued: its worker tuner0 sent nothing for" in chief
    assert "Chief: 4/4 trials finished" in chief
    worker = procs["tuner1"].output
    assert "Waiting: every grid point is handed out" in worker
    assert "Done: 4/4 trials" in worker
    assert _finished(out) == [f"trial_{i}" for i in range(4)]
    configs = {json.loads((out / t / "results.json").read_text())["config"]["optimizer"]
               + json.loads((out / t / "results.json").read_text())["config"]["activation"]
               for t in _finished(out)}
    assert len(configs) == 4  # every point once


# Point 2 ------------------------------------------------------------------

def test_a_second_chief_on_a_busy_port_is_refused(tmp_path, free_port):
    grid = _grid_file(tmp_path)
    first = _Process(_fake("sweep", f"--grid={grid}", f"--output_dir={tmp_path / 'a'}"),
                     _env(**_distributed(free_port, "chief")))
    try:
        _wait_for_port(free_port, first, timeout=120)
        second = subprocess.run(
            _fake("sweep", f"--grid={grid}", f"--output_dir={tmp_path / 'b'}"),
            cwd=ROOT, env=_env(**_distributed(free_port, "chief")),
            capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    assert (f"keras-egf-sweep: error: cannot listen on 127.0.0.1:{free_port}: the "
            "port is in use") in second.stderr
    assert "Traceback" not in second.stderr
    assert f"Chief listening on 127.0.0.1:{free_port}" in first.output


def _wait_for_port(port, process, timeout):
    """Returns once something listens on 127.0.0.1:`port`."""
    import socket

    deadline = time.time() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert process.proc.poll() is None, process.output[-3000:]
        assert time.time() < deadline, process.output[-3000:]
        time.sleep(0.2)


def test_a_worker_without_a_chief_exits_naming_the_address(tmp_path, free_port):
    grid = _grid_file(tmp_path)
    worker = subprocess.run(
        _fake("sweep", f"--grid={grid}", f"--output_dir={tmp_path / 's'}",
              "--chief_timeout_s=2"),
        cwd=ROOT, env=_env(**_distributed(free_port, "tuner0")),
        capture_output=True, text=True, timeout=120)
    assert worker.returncode == 1, worker.stdout[-2000:] + worker.stderr[-2000:]
    assert (f"keras-egf-sweep: error: no keras-egf-sweep chief answered at "
            f"127.0.0.1:{free_port} within 2 s") in worker.stderr
    assert "Traceback" not in worker.stderr


def test_a_worker_that_loses_its_chief_exits_naming_the_address(tmp_path, free_port):
    """The chief is killed while a worker trains: once its trial ends the
    worker gets no answer for --chief_timeout_s and exits 1, naming the
    address, its finished trial kept."""
    grid = _grid_file(tmp_path)
    out = tmp_path / "s"
    flags = [f"--grid={grid}", f"--output_dir={out}", "--heartbeat_s=0.5",
             "--chief_timeout_s=3"]
    go = tmp_path / "go"
    chief = _Process(_fake("sweep", *flags), _env(**_distributed(free_port, "chief")))
    worker = _Process(_fake("sweep", *flags), _env(
        FAKE_WAIT_FOR=str(go), **_distributed(free_port, "tuner0")))
    try:
        worker.wait_for("fake trial started", timeout=180)
        chief.kill()
        go.touch()
        assert worker.wait(timeout=120) == 1, worker.output[-3000:]
    finally:
        chief.kill()
        worker.kill()
    assert (f"keras-egf-sweep: error: lost the chief at 127.0.0.1:{free_port} "
            "(DEADLINE_EXCEEDED: no answer within 3 s)") in worker.output
    assert "Traceback" not in worker.output
    assert _finished(out) == ["trial_0"]


# Point 3 ------------------------------------------------------------------

@pytest.fixture
def fake_trials(monkeypatch):
    monkeypatch.setattr(experiment, "run_comparison", sweep_fakes.fake_run_comparison)
    sweep_fakes.CALLS.clear()
    return sweep_fakes.CALLS


def _tuner(spec, folder, lines=None):
    return sweep.SCSDCTuner(spec, progress=(lines if lines is not None else []).append,
                            directory=str(folder.parent), project_name=folder.name)


def _spec(axes=AXES):
    return grid_lib.parse_grid({"name": "g", "fixed": TINY, "grid": axes})


def _damage(kind, out):
    if kind == "oracle emptied":
        (out / "oracle.json").write_text("")
        return "oracle.json: not valid JSON (Expecting value: line 1 column 1 (char 0))"
    if kind == "oracle half-written":
        text = (out / "oracle.json").read_text()
        (out / "oracle.json").write_text(text[:len(text) // 2])
        return "oracle.json: not valid JSON"
    if kind == "oracle deleted":
        (out / "oracle.json").unlink()
        return "oracle.json: missing"
    if kind == "trial.json emptied":
        (out / "trial_1" / "trial.json").write_text("")
        return "trial_1/trial.json: not valid JSON (Expecting value"
    raise AssertionError(kind)


def test_the_progress_line_keeps_a_tally_instead_of_rereading_results(
        tmp_path, fake_trials, monkeypatch):
    """Each finished trial's line counts the trials done so far from a
    running tally: a trial reads only its own folder's results.json (to
    reuse a finished one), not every trial's after each trial."""
    from keras_egf import results as results_lib

    spec = _spec()
    out = tmp_path / "s"
    lines = []
    tuner = _tuner(spec, out, lines)
    read, paths = results_lib.read, []
    monkeypatch.setattr(results_lib, "read",
                        lambda path, *a, **k: paths.append(path) or read(path, *a, **k))
    tuner.search(verbose=0)
    assert [line.split(" trial ")[0] for line in lines] == [
        "[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert all(" sparse acc 0.5000 dense acc 0.5000 " in line for line in lines)
    assert sorted(paths) == [str(out / f"trial_{i}" / "results.json") for i in range(4)]
    # Resumed: the tally starts from the trials already finished.
    (out / "trial_2" / "results.json").unlink()
    lines.clear()
    tuner = _tuner(spec, out, lines)
    assert sweep.requeue_broken_trials(tuner) == [("2", "results.json missing")]
    tuner.search(verbose=0)
    assert len(lines) == 1 and lines[0].startswith("[4/4] trial 2 ")


@pytest.mark.parametrize("kind", ["oracle emptied", "oracle half-written",
                                  "oracle deleted", "trial.json emptied"])
def test_damaged_oracle_state_is_named_and_rebuilt_from_the_results(
        tmp_path, fake_trials, kind):
    """The oracle's state rebuilt from the intact results.json files: the
    finished trials are kept (not re-run, files untouched), the one whose
    run was cut off (no results.json) runs again."""
    spec = _spec()
    out = tmp_path / "s"
    _tuner(spec, out).search(verbose=0)
    (out / "trial_3" / "results.json").unlink()  # killed before it finished
    kept = {t: (out / t / "results.json").read_bytes() for t in _finished(out)}
    why = _damage(kind, out)
    lines = []
    tuner = _tuner(spec, out, lines)
    assert len(lines) == 1 and lines[0].startswith("Rebuilt the sweep's state from "
                                                   "its trials' results.json ("), lines
    assert why in lines[0]
    assert lines[0].endswith("3 finished trial(s) kept, 1 to run again.")
    assert [p for p, _ in tuner.repaired] == [str(out / why.split(":")[0])]
    fake_trials.clear()
    tuner.search(verbose=0)
    assert fake_trials == [str(out / "trial_3")]  # only the unfinished one
    assert {t: (out / t / "results.json").read_bytes() for t in kept} == kept
    assert _finished(out) == [f"trial_{i}" for i in range(4)]
    assert sweep.state_problems(str(out)) == []
    lines.clear()
    again = _tuner(spec, out, lines)  # and the next run loads it as it is
    assert lines == [] and again.repaired == []
    assert len(again.oracle.trials) == 4


def test_damaged_grid_file_is_named_and_rewritten_when_safe(tmp_path, fake_trials):
    spec = _spec()
    out = tmp_path / "s"
    assert sweep.check_same_grid(str(out), spec) is None
    _tuner(spec, out).search(verbose=0)
    saved = (out / "grid.json").read_bytes()
    (out / "grid.json").write_text("")
    why = sweep.check_same_grid(str(out), spec)
    assert why.startswith("not valid JSON (Expecting value")
    error = str(sweep.grid_file_error(str(out), why))  # what a worker says
    assert error.startswith(f"{out / 'grid.json'}: not valid JSON")
    line = sweep.repair_grid_file(_tuner(spec, out), why)
    assert line.startswith(f"{out / 'grid.json'} was not valid JSON")
    assert "every finished trial (4) is a point" in line
    assert (out / "grid.json").read_bytes() == saved
    # Not rewritten over trials of another grid: named instead.
    (out / "grid.json").unlink()
    other = _spec({"optimizer": ["rmsprop", "adam"], "activation": ["relu", "swish"]})
    assert sweep.check_same_grid(str(out), other) == "missing"
    with pytest.raises(ValueError, match=r"trial_\d/results.json is not a point of "
                       "this grid"):
        sweep.repair_grid_file(_tuner(other, out), "missing")
    assert not (out / "grid.json").exists()


def test_sweep_binary_names_and_rebuilds_damaged_state(tmp_path, fake_trials):
    """What used to be `error: Expecting value: line 1 column 1 (char 0)` or
    a NotFoundError traceback: oracle.json deleted, grid.json and a
    trial.json emptied at once; the sweep names each, rebuilds them from
    the results.json files and has nothing left to run."""
    grid = _grid_file(tmp_path)
    out = tmp_path / "s"
    spec = grid_lib.load_grid(str(grid))
    sweep.check_same_grid(str(out), spec)
    _tuner(spec, out).search(verbose=0)
    kept = {t: (out / t / "results.json").read_bytes() for t in _finished(out)}
    (out / "oracle.json").unlink()
    (out / "grid.json").write_text("")
    (out / "trial_2" / "trial.json").write_text("")
    proc = subprocess.run(_fake("sweep", f"--grid={grid}", f"--output_dir={out}"),
                          cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Rebuilt the sweep's state from its trials' results.json (oracle.json: " \
        "missing; trial_2/trial.json: not valid JSON" in proc.stdout
    assert "4 finished trial(s) kept, 0 to run again." in proc.stdout
    assert f"{out / 'grid.json'} was not valid JSON" in proc.stdout
    assert "(4 already finished)" in proc.stdout and "Done: 4/4" in proc.stdout
    assert "fake trial started" not in proc.stdout
    assert {t: (out / t / "results.json").read_bytes() for t in kept} == kept


# Point 7 ------------------------------------------------------------------

def test_resume_rechecks_the_metrics_as_the_report_does(tmp_path, fake_trials):
    """A finished trial whose results.json has a non-numeric test_accuracy
    (the report cannot count it) is re-queued and re-run, named."""
    spec = _spec({"optimizer": ["sgd", "adam"]})
    out = tmp_path / "s"
    _tuner(spec, out).search(verbose=0)
    path = out / "trial_0" / "results.json"
    results = json.loads(path.read_text())
    results["models"]["sparse"]["test_accuracy"] = "0.91"
    path.write_text(json.dumps(results))
    tuner = _tuner(spec, out)
    assert sweep.requeue_broken_trials(tuner) == [(
        "0", "results.json not a keras-egf results file (models.sparse."
        "test_accuracy: '0.91' is not a finite number)")]
    fake_trials.clear()
    tuner.search(verbose=0)
    assert fake_trials == [str(out / "trial_0")]
    assert json.loads(path.read_text())["models"]["sparse"]["test_accuracy"] == 0.5
    assert tuner.finished_trials() == ["trial_0", "trial_1"]


# Point 8 ------------------------------------------------------------------

# Sends the process SIGINT when it first imports module SIGINT_AT (what a
# Ctrl-C in a binary's first seconds meets).
_SITECUSTOMIZE = r"""
import os, signal, sys

class _SigintAt:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["SIGINT_AT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, _SigintAt())
"""


@pytest.mark.parametrize("binary, module", [
    ("train", "tensorflow"),  # while the binary imports TensorFlow
    ("sweep", "tensorflow"),
    ("sweep", "keras_tuner")])  # in main, before the sweep starts
def test_ctrl_c_while_starting_exits_130_without_traceback(tmp_path, binary, module):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    grid = _grid_file(tmp_path)
    flags = ([f"--output_dir={tmp_path / 'out'}"] if binary == "train" else
             [f"--grid={grid}", f"--output_dir={tmp_path / 'out'}"])
    proc = subprocess.run([sys.executable, "-m", f"trainers.{binary}", *flags],
                          cwd=ROOT, env=_env(PYTHONPATH=f"{hook}{os.pathsep}{ROOT}",
                                             SIGINT_AT=module),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    assert "Interrupted" in proc.stderr
    assert not (tmp_path / "out").exists()


def _killed_while_writing(make):
    """Runs `make()` in a forked child that is SIGKILLed where `make` says
    (it calls os.kill itself); returns once the child is gone."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            make()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _write_then_die(path):
    def make():
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        files.write_json_atomic(path, {"x": 1})
    return make


def test_temporary_files_of_a_killed_sweep_are_removed_on_the_next_run(
        tmp_path, fake_trials):
    grid = _grid_file(tmp_path, {"optimizer": ["sgd", "adam"]})
    out = tmp_path / "s"
    spec = grid_lib.load_grid(str(grid))
    sweep.check_same_grid(str(out), spec)
    _tuner(spec, out).search(verbose=0)
    for path in (out / "oracle.json", out / "trial_0" / "results.json",
                 out / "trial_1" / "trial.json"):
        _killed_while_writing(_write_then_die(str(path)))
    left = sorted(str(p.relative_to(out)) for p in out.glob("**/.tmp-*"))
    assert len(left) == 3
    proc = subprocess.run(_fake("sweep", f"--grid={grid}", f"--output_dir={out}"),
                          cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Removed 3 temporary file(s) that killed runs left: " in proc.stdout
    assert all(name in proc.stdout for name in left)
    assert list(out.glob("**/.tmp-*")) == []
    assert "(2 already finished)" in proc.stdout


def test_only_what_a_dead_process_left_is_removed(tmp_path):
    """A temporary file is a leftover when its process (named in it) is
    gone from this host; one of a live process is being written now. One
    with no owner in its name (an older keras-egf's) goes once it is an
    hour old."""
    (tmp_path / "trial_0").mkdir()
    _killed_while_writing(_write_then_die(str(tmp_path / "trial_0" / "results.json")))
    (dead,) = (tmp_path / "trial_0").glob(".tmp-*")
    fd, live = tempfile.mkstemp(prefix=files.owned_prefix(".tmp-"), suffix=".json",
                                dir=tmp_path)
    os.close(fd)
    old, new = tmp_path / ".tmp-abcd1234.json", tmp_path / ".tmp-efgh5678.json"
    old.write_text("{")
    new.write_text("{")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert sorted(files.remove_sweep_leftovers(str(tmp_path))) == sorted(
        [str(old), str(dead)])
    assert sorted(p.name for p in tmp_path.glob("**/.tmp-*")) == sorted(
        [os.path.basename(live), new.name])


def test_train_ctrl_c_during_the_commit_keeps_the_run_and_leftovers_go(tmp_path):
    """A Ctrl-C at the staging folder's rename: the rename completes, and
    the run (which has finished and replaced its folder) exits 0 saying so,
    not 130 ("as it was"); staging folders a SIGKILLed run left beside the
    output are removed first."""
    out = tmp_path / "run"

    def make():
        with files.staged_output_dir(str(out)) as staging:
            open(os.path.join(staging, "results.json"), "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

    _killed_while_writing(make)
    (left,) = [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.partial-")]
    proc = subprocess.run(
        _fake("train", f"--output_dir={out}", "--dataset=mnist5k", "--epochs=1",
              "--dense_width=8", "--batch_size=512", "--verbose=0"),
        cwd=ROOT, env=_env(FAKE_SIGINT_AT_RENAME="1"), capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"Removed 1 folder(s) that killed runs left: {tmp_path / left}" in proc.stdout
    assert f"Interrupted after the run finished: its results are in {out}." in proc.stdout
    assert "as it was" not in proc.stdout
    assert json.loads((out / "results.json").read_text())["models"]["sparse"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
