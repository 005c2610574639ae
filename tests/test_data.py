import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_egf import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name, shape, classes", [
    ("fashion_mnist", (28, 28, 1), 10),
    ("cifar10", (32, 32, 3), 10),
    ("cifar100", (32, 32, 3), 100),
])
def test_tfds_datasets_through_real_loading_code(name, shape, classes):
    with tfds.testing.mock_data(num_examples=24):
        ds = data.make_datasets(name, batch_size=8, flatten=False, seed=0,
                                augment=True)
        x, y = next(iter(ds.train))
        xt, yt = next(iter(ds.test))
    assert ds.input_shape == shape and ds.num_classes == classes
    assert x.shape == (8,) + shape and xt.shape == (8,) + shape
    assert x.dtype.name == "float32" and y.dtype.name == "int64"
    for arr in (x.numpy(), xt.numpy()):
        assert arr.min() >= 0.0 and arr.max() <= 1.0
    assert 0 <= yt.numpy().min() and yt.numpy().max() < classes
    assert ds.num_train == 24


def test_mnist5k_split_is_deterministic_stratified_and_flat():
    x_tr, y_tr, x_te, y_te = data.mnist5k_arrays()
    assert len(y_tr) == 4000 and len(y_te) == 1000
    assert np.bincount(y_te).tolist() == [100] * 10
    x_tr2, _, _, _ = data.mnist5k_arrays()
    np.testing.assert_array_equal(x_tr, x_tr2)
    ds = data.make_datasets("mnist5k", batch_size=50, seed=3)
    x, y = next(iter(ds.train))
    assert x.shape == (50, 784) and 0 <= x.numpy().min() and x.numpy().max() <= 1
    # Same seed, fresh pipeline: same batches (both models see one order).
    again = data.make_datasets("mnist5k", batch_size=50, seed=3)
    np.testing.assert_array_equal(next(iter(again.train))[1], y)


def test_augmentation_changes_training_images_only():
    plain = data.make_datasets("mnist5k", batch_size=32, seed=0, flatten=False)
    aug = data.make_datasets("mnist5k", batch_size=32, seed=0, flatten=False,
                             augment=True)
    xp, yp = next(iter(plain.train))
    xa, ya = next(iter(aug.train))
    np.testing.assert_array_equal(yp, ya)
    assert not np.allclose(xp, xa)
    np.testing.assert_array_equal(next(iter(plain.test))[0], next(iter(aug.test))[0])


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError,
                       match="keras-egf-data prepare cifar10 --data_dir=DIR"):
        data.make_datasets("cifar10", data_dir=str(tmp_path))


class _Downloading(Exception):
    """Raised where tfds would start downloading."""


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10", "cifar100"])
def test_prepare_runs_the_tfds_builder_up_to_the_download(name, tmp_path, monkeypatch):
    """`prepare` is the builder's download_and_prepare (what `tfds build`
    runs, without its apache_beam import): in the installed environment it
    gets as far as downloading into data_dir; the download is stubbed."""
    def download(self, url_or_urls, *args, **kwargs):
        raise _Downloading(url_or_urls)

    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                        download)
    with pytest.raises(_Downloading, match="http"):
        data.prepare(name, str(tmp_path))
    assert (tmp_path / name).is_dir()  # into the data_dir given


def test_prepare_then_load_under_tfds_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=8):
        prepared = data.prepare("cifar10", str(tmp_path))
        assert prepared["path"] and set(prepared) == {"path", "train", "test"}
        data.check_available("cifar10", str(tmp_path))
    assert data.prepare("mnist5k") is None  # bundled
    with pytest.raises(ValueError, match="'imagenet'"):
        data.prepare("imagenet")


_MOCK_TFDS_PREPARE = """
import sys
import tensorflow_datasets as tfds
from trainers.data import run
sys.argv[0] = "keras-egf-data"
with tfds.testing.mock_data(num_examples=8):
    run()
"""


def test_data_binary_prepares_under_tfds_mock(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", _MOCK_TFDS_PREPARE, "prepare", "mnist5k", "cifar10",
         f"--data_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
        timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mnist5k: bundled" in proc.stdout
    assert "cifar10: prepared in " in proc.stdout
    assert f"--dataset=cifar10 --data_dir={tmp_path}" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-c", _MOCK_TFDS_PREPARE, "prepare", "imagenet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode == 2 and "'imagenet'" in bad.stderr


def test_unknown_dataset_named():
    with pytest.raises(ValueError, match="'imagenet'"):
        data.make_datasets("imagenet")


def test_flat_mnist5k_pipelines_equal_the_image_pipelines_flattened():
    """The flattened mnist5k pipelines read arrays flattened once per process
    instead of mapping a reshape; the batches (values and order, over two
    reshuffled epochs) are those of the image pipelines, reshaped."""
    flat = data.make_datasets("mnist5k", batch_size=512, seed=3, flatten=True)
    images = data.make_datasets("mnist5k", batch_size=512, seed=3, flatten=False)
    assert flat.input_shape == (784,)
    for split in ("train", "train", "test"):  # the train pipeline twice: epochs
        a = list(getattr(flat, split))
        b = list(getattr(images, split))
        assert len(a) == len(b) > 1
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy().reshape(len(xb), -1))
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_different_seeds_give_different_data_orders():
    def labels(seed):
        ds = data.make_datasets("mnist5k", batch_size=64, seed=seed)
        return [y.numpy().tolist() for _, y in ds.train.take(3)]

    assert labels(0) == labels(0)
    assert labels(0) != labels(1)
    assert labels(1) != labels(2)
    # And each epoch reshuffles.
    ds = data.make_datasets("mnist5k", batch_size=64, seed=0)
    first = [y.numpy().tolist() for _, y in ds.train.take(2)]
    second = [y.numpy().tolist() for _, y in ds.train.take(2)]
    assert first != second
