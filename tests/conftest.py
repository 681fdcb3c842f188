import os
from pathlib import Path

import numpy as np
import pytest

REAL_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def fashion_mnist():
    """The genuine data set, split as the study splits it; skips the test when the files are not here."""
    import mnist_reader

    data_dir = mnist_reader.resolve_data_dir()
    if not all((Path(data_dir) / name).exists() for name in REAL_FILES):
        env = os.environ.get("FASHION_MNIST_DIR")
        pytest.skip(f"Fashion-MNIST not found in {data_dir} (FASHION_MNIST_DIR={env!r}); see data/README.md")
    return mnist_reader.load_fashion_mnist(data_dir)


@pytest.fixture(scope="module")
def data():
    """200 train and 100 validation rows of 20 features, 3 classes that a small MLP can learn."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 20))

    def sample(n):
        y = rng.integers(0, 3, size=n)
        return (centers[y] + rng.normal(scale=1.5, size=(n, 20))).astype(np.float32), y

    return *sample(200), *sample(100)


@pytest.fixture
def store(tmp_path):
    """Where runs are recorded (``study.records.Records``), in a temporary folder."""
    from study import records

    return records.Records(tmp_path / "log" / "models.csv", tmp_path / "log" / "histories", tmp_path / "weights")
