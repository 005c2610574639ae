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
    with pytest.raises(ValueError, match="is not empty .*results.json.*--overwrite"):
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
