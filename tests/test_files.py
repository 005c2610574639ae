import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from keras_egf import files  # noqa: E402


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_atomic_writes_get_the_umask_mode(tmp_path, umask):
    expected = 0o666 & ~umask
    assert files.default_file_mode() == expected
    files.write_json_atomic(str(tmp_path / "r.json"), {"a": float("nan")})
    files.write_text_atomic(str(tmp_path / "r.md"), "# x\n")
    fig = plt.figure()
    plt.plot([0, 1], [1, 0], "o-")
    files.save_figure_atomic(fig, str(tmp_path / "r.png"), dpi=50)
    plt.close(fig)
    for name in ("r.json", "r.md", "r.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None}
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md", "r.png"]


def test_staged_output_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("old")
    (out / "stale.txt").write_text("stale")
    with pytest.raises(KeyboardInterrupt):
        with files.staged_output_dir(str(out)) as staging:
            (tmp_path / "seen").write_text(staging)
            with open(os.path.join(staging, "results.json"), "w") as f:
                f.write("half")
            raise KeyboardInterrupt
    assert (out / "results.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "seen"]
    with files.staged_output_dir(str(out)) as staging:
        with open(os.path.join(staging, "results.json"), "w") as f:
            f.write("new")
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert (out / "results.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "seen"]


def test_fresh_output_dir_check(tmp_path):
    files.check_fresh_output_dir(str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()  # nothing created
    (tmp_path / "empty").mkdir()
    files.check_fresh_output_dir(str(tmp_path / "empty"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="is not empty .*results.json.*`overwrite=True`"):
        files.check_fresh_output_dir(str(tmp_path / "full"))
    files.check_fresh_output_dir(str(tmp_path / "full"), overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        files.check_fresh_output_dir(str(tmp_path / "file"))


def test_read_json_says_why(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        files.read_json(str(tmp_path / "none.json"))
    (tmp_path / "cut.json").write_text('{"config": {"a": 1')
    with pytest.raises(ValueError, match="not valid JSON"):
        files.read_json(str(tmp_path / "cut.json"))


def test_empty_output_dir_is_refused_by_every_check(tmp_path):
    for check in (files.check_output_path, files.check_fresh_output_dir,
                  files.check_sweep_output_dir, files.check_output_dir):
        with pytest.raises(ValueError, match="output_dir='': empty"):
            check("")


def test_overwrite_replaces_only_what_keras_egf_wrote(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for check in (files.check_fresh_output_dir, files.check_sweep_output_dir):
        with pytest.raises(ValueError, match=f"output_dir={str(mine)!r} is not a "
                           "keras-egf run or sweep \\(holds notes.txt\\)"):
            check(str(mine), overwrite=True)
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    (run / "results.json").write_text("{}")
    (run / "comparison.png").write_text("png")
    sweep = tmp_path / "sweep"
    (sweep / "trial_0").mkdir(parents=True)
    for name, text in (("grid.json", "{}"), ("oracle.json", '{"a": 1}'),
                       ("chief.json", "{}")):
        (sweep / name).write_text(text)
    for folder in (run, sweep):
        files.check_fresh_output_dir(str(folder), overwrite=True)
        files.check_sweep_output_dir(str(folder), overwrite=True)
        (folder / "notes.txt").write_text("keep")
        with pytest.raises(ValueError, match="holds files keras-egf did not "
                           "write beside its .*notes.txt"):
            files.check_fresh_output_dir(str(folder), overwrite=True)
    files.clear_output_dir(str(run))  # what the check let through: all removed
    assert list(run.iterdir()) == []
    assert (mine / "notes.txt").read_text() == "keep"


def test_sweep_output_dir_check(tmp_path, monkeypatch):
    """A sweep writes inside its folder: new, empty or a sweep, writable."""
    files.check_sweep_output_dir(str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()  # nothing created
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    files.check_sweep_output_dir(str(sweep))  # empty
    (sweep / ".tmp-x.lock").write_text("")  # a lock being made right now
    files.check_sweep_output_dir(str(sweep))
    (sweep / "grid.json").write_text("{}")
    (sweep / "notes.txt").write_text("kept")
    files.check_sweep_output_dir(str(sweep))  # a sweep: resumed, nothing removed
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="is not empty and not a keras-egf sweep "
                       "\\(holds results.json\\)"):
        files.check_sweep_output_dir(str(run))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        files.check_sweep_output_dir(str(tmp_path / "file"))
    with pytest.raises(ValueError, match=f"cannot be written \\({tmp_path / 'file'} "
                       "is not a folder"):
        files.check_sweep_output_dir(str(tmp_path / "file" / "sub"))
    real_access = os.access  # a read-only folder, even for root
    monkeypatch.setattr(os, "access", lambda p, mode: p != str(sweep) and
                        real_access(p, mode))
    with pytest.raises(ValueError, match=f"cannot be written \\({sweep} is not "
                       "writable"):
        files.check_sweep_output_dir(str(sweep))
    with pytest.raises(ValueError, match=f"cannot be written \\({sweep} is not "
                       "writable"):
        files.check_sweep_output_dir(str(sweep / "sub"))


def test_a_link_to_a_folder_is_written_through(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "results.json").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert files.check_fresh_output_dir(str(link), overwrite=True) == str(target)
    with files.staged_output_dir(str(link)) as staging:
        with open(os.path.join(staging, "results.json"), "w") as f:
            f.write("new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert (target / "results.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


def test_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    import socket
    import subprocess
    import sys

    lock = files.FolderLock(str(tmp_path / "sweep"))
    assert lock.acquire() is None
    held = json.loads((tmp_path / "sweep" / files.SWEEP_LOCK).read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    with pytest.raises(ValueError, match=f"in use by another keras-egf-sweep "
                       f"\\(PID {os.getpid()} on {socket.gethostname()}"):
        files.FolderLock(str(tmp_path / "sweep")).acquire()
    lock.release()
    assert not (tmp_path / "sweep" / files.SWEEP_LOCK).exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)
    (tmp_path / "sweep" / files.SWEEP_LOCK).write_text(json.dumps(
        {"pid": dead, "host": socket.gethostname(), "started": "earlier"}))
    again = files.FolderLock(str(tmp_path / "sweep"))
    assert f"from PID {dead}" in again.acquire()
    assert json.loads((tmp_path / "sweep" / files.SWEEP_LOCK).read_text())["pid"] == os.getpid()
    again.release()
    # Another host's lock cannot be checked: refused, naming it.
    (tmp_path / "sweep" / files.SWEEP_LOCK).write_text(json.dumps(
        {"pid": dead, "host": "elsewhere", "started": "earlier"}))
    with pytest.raises(ValueError, match=f"PID {dead} on elsewhere"):
        files.FolderLock(str(tmp_path / "sweep")).acquire()


def test_library_errors_name_arguments_and_binaries_say_flags(tmp_path):
    """The library says `overwrite=True`; a binary with that flag says
    --overwrite (trainers.as_flags), and only for its own flags."""
    from trainers import as_flags

    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ValueError) as e:
        files.check_fresh_output_dir(str(tmp_path))
    assert "pass `overwrite=True` to replace it" in str(e.value)
    assert "pass --overwrite to replace it" in as_flags(e.value, ("overwrite",))
    assert as_flags(e.value, ()) == str(e.value)
    assert as_flags("with `pack`, `seeds=False` or `strategy=None`",
                    ("pack", "seeds", "strategy")) == (
        "with --pack, --noseeds or `strategy=None`")
