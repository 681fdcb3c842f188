"""Writers of small, fake Fashion-MNIST folders in the idx format (see mnist_reader's docstring)."""

import gzip
from pathlib import Path

import numpy as np

import mnist_reader


def idx_bytes(magic, sizes, data):
    """An idx file: big-endian int32 magic and sizes, then the raw bytes."""
    return np.array([magic, *sizes], dtype=">i4").tobytes() + bytes(data)


def write_split(folder, kind, images, labels, gz=True):
    """Write ``{kind}-images-idx3-ubyte`` and ``{kind}-labels-idx1-ubyte`` (gzip-compressed if ``gz``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    files = {f"{kind}-images-idx3-ubyte": idx_bytes(2051, (n, rows, cols), images.astype(np.uint8).tobytes()),
             f"{kind}-labels-idx1-ubyte": idx_bytes(2049, (len(labels),), labels.astype(np.uint8).tobytes())}
    for name, content in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1))
        else:
            (folder / name).write_bytes(content)


def class_pattern_images(n, seed=0, n_classes=10):
    """``n`` 28x28 uint8 images whose class (label ``i % n_classes``) sets a coarse 7x7 pattern, plus noise.

    The patterns are fixed for all seeds; ``seed`` only draws the noise. A small MLP learns them in a few
    hundred steps, so a quick training run shows real learning.
    """
    patterns = np.random.default_rng(12345).random((n_classes, 7, 7))
    patterns = np.kron(patterns, np.ones((4, 4)))  # 7x7 blocks of 4x4 pixels -> 28x28
    labels = np.arange(n) % n_classes
    rng = np.random.default_rng(seed)
    labels = rng.permutation(labels)
    images = 0.7 * patterns[labels] + 0.3 * rng.random((n, 28, 28))
    return np.rint(255 * images).astype(np.uint8), labels.astype(np.uint8)


def write_fake_fashion_mnist(folder, n_train=5000, n_test=1000, gz=True):
    """A folder holding the four files of a fake Fashion-MNIST with learnable classes; returns the folder.

    The folder also holds mnist_reader's stand-in marker, so that load_fashion_mnist (in a notebook executed on it,
    say) reads it without checking the files against Fashion-MNIST's MD5s."""
    folder = Path(folder)
    write_split(folder, "train", *class_pattern_images(n_train, seed=1), gz=gz)
    write_split(folder, "t10k", *class_pattern_images(n_test, seed=2), gz=gz)
    (folder / mnist_reader.STAND_IN_MARKER).write_text("A synthetic stand-in for Fashion-MNIST (tests).\n")
    return folder
