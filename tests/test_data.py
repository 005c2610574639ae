import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_egf import data


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
    with pytest.raises(data.DatasetNotPreparedError, match="tfds build cifar10"):
        data.make_datasets("cifar10", data_dir=str(tmp_path))


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
