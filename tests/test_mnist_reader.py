"""Tests for mnist_reader: idx parsing, downloading (never over the network) and the split."""

import functools
import gzip
import hashlib
import http.server
import io
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import mnist_reader

N_TRAIN = 50
N_TEST = 10
N_VAL = 5  # round(0.1 * N_TRAIN), the default val_fraction


# ---------------------------------------------------------------- helpers


def idx_bytes(magic, sizes, data):
    """An idx file: big-endian int32 magic and sizes, then the raw bytes."""
    return np.array([magic, *sizes], dtype=">i4").tobytes() + bytes(data)


def image_file_bytes(images):
    n, rows, cols = images.shape
    return idx_bytes(2051, (n, rows, cols), images.tobytes())


def label_file_bytes(labels):
    return idx_bytes(2049, (len(labels),), labels.tobytes())


def write(path, content, gz):
    """Write `content` to `path` (plus .gz and compressed if `gz`) and return the path written."""
    if gz:
        path = path.with_name(path.name + ".gz")
        content = gzip.compress(content)
    path.write_bytes(content)
    return path


def write_split(folder, kind, images, labels, gz=True):
    write(folder / f"{kind}-images-idx3-ubyte", image_file_bytes(images), gz)
    write(folder / f"{kind}-labels-idx1-ubyte", label_file_bytes(labels), gz)


def numbered_images(n):
    """Images whose first pixel is the row number, so rows can be traced through a shuffle."""
    rng = np.random.default_rng(123)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    images[0, 1, :2] = (0, 255)  # make sure both ends of the pixel range occur
    return images


def row_numbers(X):
    return np.rint(X[:, 0] * 255).astype(int)


def write_fake(folder, gz=True):
    """A small fake Fashion-MNIST in `folder`: 50 training and 10 test rows, label = row % 10."""
    folder.mkdir(exist_ok=True)
    write_split(folder, "train", numbered_images(N_TRAIN), (np.arange(N_TRAIN) % 10).astype(np.uint8), gz=gz)
    write_split(folder, "t10k", numbered_images(N_TEST), (np.arange(N_TEST) % 10).astype(np.uint8), gz=gz)
    return folder


def trust(monkeypatch, folder):
    """Make the files in `folder` the genuine ones for load_fashion_mnist: their MD5s replace the published ones."""
    md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(mnist_reader, "FILES", {name: md5s.get(name, md5) for name, md5 in mnist_reader.FILES.items()})
    monkeypatch.setattr(mnist_reader, "RAW_MD5S",
                        {name: md5s.get(name, md5) for name, md5 in mnist_reader.RAW_MD5S.items()})


@pytest.fixture
def fake_dir(tmp_path, monkeypatch):
    """A folder with a small fake Fashion-MNIST (`write_fake`), whose MD5s load_fashion_mnist takes as the genuine
    ones (`trust`): every load of it goes through the MD5 check."""
    folder = write_fake(tmp_path / "fashion")
    trust(monkeypatch, folder)
    return folder


@pytest.fixture
def fake_files(monkeypatch):
    """Fake contents for the four official file names, with FILES patched to their MD5s."""
    rng = np.random.default_rng(7)
    contents = {name: rng.bytes(1000 + 10 * i) for i, name in enumerate(mnist_reader.FILES)}
    monkeypatch.setattr(
        mnist_reader, "FILES", {name: hashlib.md5(data).hexdigest() for name, data in contents.items()}
    )
    return contents


class StubOpener:
    """Stands in for urllib.request.urlopen: serves `contents` by file name and records the URLs asked for."""

    def __init__(self, contents, base_url="http://mirror.test/"):
        self.contents = contents
        self.base_url = base_url
        self.urls = []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        name = url.removeprefix(self.base_url)
        if name not in self.contents:
            raise urllib.error.URLError("no such file")
        return io.BytesIO(self.contents[name])


def stub_download(dest, served):
    """Run download_fashion_mnist against a StubOpener serving `served`; return the opener."""
    opener = StubOpener(served)
    mnist_reader.download_fashion_mnist(dest, base_url=opener.base_url, opener=opener)
    return opener


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ---------------------------------------------------------------- load_mnist


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_mnist_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([9, 0, 3, 3, 7], dtype=np.uint8)
    write_split(tmp_path, "t10k", images, labels, gz=gz)

    got_images, got_labels = mnist_reader.load_mnist(tmp_path, kind="t10k")

    assert (got_images.dtype, got_labels.dtype) == (np.uint8, np.uint8)
    assert (got_images.shape, got_labels.shape) == ((5, 784), (5,))
    np.testing.assert_array_equal(got_images, images.reshape(5, 784))
    np.testing.assert_array_equal(got_labels, labels)


def test_load_mnist_prefers_gz(tmp_path):
    gz_images = np.full((2, 28, 28), 1, dtype=np.uint8)
    raw_images = np.full((2, 28, 28), 2, dtype=np.uint8)
    labels = np.array([1, 2], dtype=np.uint8)
    write_split(tmp_path, "train", gz_images, labels, gz=True)
    write_split(tmp_path, "train", raw_images, labels, gz=False)

    images, _ = mnist_reader.load_mnist(tmp_path)

    assert (images == 1).all()


def test_load_mnist_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        mnist_reader.load_mnist(tmp_path, kind="test")


GOOD_IMAGES = np.zeros((5, 28, 28), dtype=np.uint8)
GOOD_LABELS = np.arange(5, dtype=np.uint8)
BROKEN_FILES = {
    # case: (which file is broken, its content, what the message must say)
    "images wrong magic": ("images", idx_bytes(2049, (5, 28, 28), GOOD_IMAGES.tobytes()), "magic"),
    "labels wrong magic": ("labels", idx_bytes(2051, (5,), GOOD_LABELS.tobytes()), "magic"),
    "images truncated": ("images", image_file_bytes(GOOD_IMAGES)[:-1], "truncated"),
    "labels truncated": ("labels", label_file_bytes(GOOD_LABELS)[:-2], "truncated"),
    "images trailing bytes": ("images", image_file_bytes(GOOD_IMAGES) + b"\0", "bytes"),
    "images 27x28": ("images", idx_bytes(2051, (5, 27, 28), bytes(5 * 27 * 28)), "27x28"),
    "images header cut short": ("images", image_file_bytes(GOOD_IMAGES)[:10], "too short"),
    "labels empty": ("labels", b"", "too short"),
}


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("case", BROKEN_FILES)
def test_load_mnist_rejects_broken_file(tmp_path, case, gz):
    broken, content, message = BROKEN_FILES[case]
    write_split(tmp_path, "train", GOOD_IMAGES, GOOD_LABELS, gz=gz)
    name = write(tmp_path / f"train-{broken}-idx{3 if broken == 'images' else 1}-ubyte", content, gz).name

    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*{message}"):
        mnist_reader.load_mnist(tmp_path)


def test_load_mnist_rejects_count_mismatch(tmp_path):
    write_split(tmp_path, "train", GOOD_IMAGES, GOOD_LABELS[:4])

    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*5 images.*4 labels"):
        mnist_reader.load_mnist(tmp_path)


def _truncate(data):
    return data[: len(data) // 2]


def _scramble_middle(data):
    return data[:20] + bytes(b ^ 0xFF for b in data[20:60]) + data[60:]


def _break_crc(data):
    return data[:-8] + bytes(8)


@pytest.mark.parametrize("damage", [lambda d: b"not gzip at all", _truncate, _scramble_middle, _break_crc])
def test_load_mnist_rejects_corrupt_gzip(tmp_path, damage):
    write_split(tmp_path, "train", GOOD_IMAGES, GOOD_LABELS)
    images_gz = tmp_path / "train-images-idx3-ubyte.gz"
    images_gz.write_bytes(damage(images_gz.read_bytes()))

    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*gzip"):
        mnist_reader.load_mnist(tmp_path)


@pytest.mark.parametrize("missing", ["images", "labels"])
def test_load_mnist_missing_file_says_how_to_get_data(tmp_path, missing):
    write_split(tmp_path, "train", GOOD_IMAGES, GOOD_LABELS)
    next(tmp_path.glob(f"train-{missing}-*")).unlink()

    with pytest.raises(FileNotFoundError, match=f"train-{missing}") as excinfo:
        mnist_reader.load_mnist(tmp_path)
    message = str(excinfo.value)
    for hint in ("make run", "download_fashion_mnist", "FASHION_MNIST_DIR"):
        assert hint in message


# ---------------------------------------------------------------- download_fashion_mnist


def test_download_writes_verified_files(tmp_path, fake_files):
    opener = StubOpener(fake_files)
    dest = tmp_path / "new" / "folder"

    result = mnist_reader.download_fashion_mnist(dest, base_url=opener.base_url, opener=opener)

    assert isinstance(result, Path)
    assert result == dest
    assert files_in(dest) == sorted(fake_files)
    for name, data in fake_files.items():
        assert (dest / name).read_bytes() == data
    assert sorted(opener.urls) == sorted(opener.base_url + name for name in fake_files)


def test_download_base_url_without_trailing_slash(tmp_path, fake_files):
    opener = StubOpener(fake_files)

    mnist_reader.download_fashion_mnist(tmp_path, base_url=opener.base_url.rstrip("/"), opener=opener)

    assert files_in(tmp_path) == sorted(fake_files)


def test_download_skips_valid_files(tmp_path, fake_files):
    stub_download(tmp_path, fake_files)

    opener = stub_download(tmp_path, fake_files)

    assert opener.urls == []


def test_download_replaces_corrupt_file(tmp_path, fake_files):
    stub_download(tmp_path, fake_files)
    damaged = tmp_path / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"garbage")

    opener = stub_download(tmp_path, fake_files)

    assert opener.urls == [opener.base_url + damaged.name]
    assert damaged.read_bytes() == fake_files[damaged.name]
    assert files_in(tmp_path) == sorted(fake_files)


def test_download_wrong_checksum_leaves_no_file(tmp_path, fake_files):
    first = next(iter(fake_files))
    served = {**fake_files, first: b"a different file"}

    with pytest.raises(ValueError, match=rf"{re.escape(first)}.*MD5.*expected {mnist_reader.FILES[first]}"):
        stub_download(tmp_path, served)

    assert files_in(tmp_path) == []


def test_download_wrong_checksum_keeps_earlier_good_files(tmp_path, fake_files):
    last = list(fake_files)[-1]
    served = {**fake_files, last: b"a different file"}

    with pytest.raises(mnist_reader.ChecksumError, match=re.escape(last)):
        stub_download(tmp_path, served)

    assert files_in(tmp_path) == sorted(set(fake_files) - {last})


def test_download_network_error_names_url_and_leaves_no_file(tmp_path, fake_files):
    first = next(iter(fake_files))
    served = {name: data for name, data in fake_files.items() if name != first}

    with pytest.raises(mnist_reader.DownloadError) as excinfo:
        stub_download(tmp_path, served)

    message = str(excinfo.value)
    assert "http://mirror.test/" + first in message
    assert str(tmp_path) in message
    assert "FASHION_MNIST_DIR" in message
    assert files_in(tmp_path) == []


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def local_mirror(tmp_path, fake_files):
    """A real HTTP server on 127.0.0.1 serving the fake files; yields its base URL."""
    served = tmp_path / "mirror"
    served.mkdir()
    for name, data in fake_files.items():
        (served / name).write_bytes(data)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# A proxy configured in the environment must not intercept requests to the local server.
no_proxy_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def test_download_over_real_http(tmp_path, fake_files, local_mirror):
    base_url, _ = local_mirror
    dest = tmp_path / "dest"

    mnist_reader.download_fashion_mnist(dest, base_url=base_url, opener=no_proxy_open)

    assert files_in(dest) == sorted(fake_files)
    for name, data in fake_files.items():
        assert (dest / name).read_bytes() == data


def test_download_over_real_http_404(tmp_path, fake_files, local_mirror):
    base_url, served = local_mirror
    missing = list(fake_files)[-1]
    (served / missing).unlink()
    dest = tmp_path / "dest"

    with pytest.raises(mnist_reader.DownloadError, match=rf"{re.escape(base_url + missing)}.*404"):
        mnist_reader.download_fashion_mnist(dest, base_url=base_url, opener=no_proxy_open)

    assert files_in(dest) == sorted(set(fake_files) - {missing})


# ---------------------------------------------------------------- resolve_data_dir


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    default = Path(mnist_reader.__file__).parent / "data" / "fashion"
    assert mnist_reader.resolve_data_dir() == default

    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "from_env"))
    assert mnist_reader.resolve_data_dir() == tmp_path / "from_env"
    assert mnist_reader.resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


# ---------------------------------------------------------------- load_fashion_mnist


def test_load_fashion_mnist_dtypes_shapes_and_range(fake_dir):
    X_train, y_train, X_val, y_val, X_test, y_test = mnist_reader.load_fashion_mnist(fake_dir)

    assert (X_train.shape, X_val.shape, X_test.shape) == ((N_TRAIN - N_VAL, 784), (N_VAL, 784), (N_TEST, 784))
    assert (y_train.shape, y_val.shape, y_test.shape) == ((N_TRAIN - N_VAL,), (N_VAL,), (N_TEST,))
    for X in (X_train, X_val, X_test):
        assert X.dtype == np.float32
        assert X.flags.c_contiguous
        assert X.min() >= 0.0
        assert X.max() <= 1.0
    # The fake images contain both 0 and 255, so the scaled range must reach both ends.
    X_all = np.concatenate([X_train, X_val])
    assert (X_all.min(), X_all.max()) == (0.0, 1.0)
    for y in (y_train, y_val, y_test):
        assert y.dtype in (np.int64, np.intp)


def test_load_fashion_mnist_values_are_pixels_over_255(fake_dir):
    _, _, X_val, y_val, X_test, y_test = mnist_reader.load_fashion_mnist(fake_dir)
    images, labels = mnist_reader.load_mnist(fake_dir, "train")

    rows = row_numbers(X_val)
    np.testing.assert_array_equal(X_val, images[rows].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y_val, labels[rows])
    test_images, test_labels = mnist_reader.load_mnist(fake_dir, "t10k")
    np.testing.assert_array_equal(X_test, test_images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y_test, test_labels)


def test_split_is_disjoint_covering_and_follows_permutation(fake_dir):
    X_train, y_train, X_val, y_val, *_ = mnist_reader.load_fashion_mnist(fake_dir, val_fraction=0.2, seed=5)

    train_rows, val_rows = row_numbers(X_train), row_numbers(X_val)
    assert len(val_rows) == round(0.2 * N_TRAIN)
    assert set(train_rows).isdisjoint(val_rows)
    assert sorted([*train_rows, *val_rows]) == list(range(N_TRAIN))
    np.testing.assert_array_equal(
        np.concatenate([val_rows, train_rows]), np.random.default_rng(5).permutation(50)
    )
    np.testing.assert_array_equal(y_train, train_rows % 10)
    np.testing.assert_array_equal(y_val, val_rows % 10)


def test_split_depends_on_seed_only(fake_dir):
    first = mnist_reader.load_fashion_mnist(fake_dir, seed=1)
    again = mnist_reader.load_fashion_mnist(fake_dir, seed=1)
    other = mnist_reader.load_fashion_mnist(fake_dir, seed=2)

    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(row_numbers(first[2]), row_numbers(other[2]))


@pytest.mark.parametrize("val_fraction", [0, 1, -0.1, 1.5, float("nan")])
def test_load_fashion_mnist_rejects_bad_val_fraction(fake_dir, val_fraction):
    with pytest.raises(ValueError, match=r"val_fraction.*between 0 and 1"):
        mnist_reader.load_fashion_mnist(fake_dir, val_fraction=val_fraction)


def test_load_fashion_mnist_rejects_empty_split(fake_dir):
    with pytest.raises(ValueError, match="empty split"):
        mnist_reader.load_fashion_mnist(fake_dir, val_fraction=0.001)


def test_load_fashion_mnist_uses_env_var(fake_dir, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(fake_dir))

    X_train, *_, X_test, _ = mnist_reader.load_fashion_mnist()

    assert (len(X_train), len(X_test)) == (N_TRAIN - N_VAL, N_TEST)


def test_load_fashion_mnist_argument_beats_env_var(fake_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "nothing here"))
    with pytest.raises(FileNotFoundError, match="nothing here"):
        mnist_reader.load_fashion_mnist()

    X_train, *_ = mnist_reader.load_fashion_mnist(fake_dir)

    assert len(X_train) == N_TRAIN - N_VAL


def test_class_names_follow_the_label_order_of_the_data_set():
    names = mnist_reader.CLASS_NAMES
    assert len(set(names)) == len(names) == 10
    # Label 0, 6 and 9 are the published ones for these three; a shifted list would fail here.
    assert (names[0], names[6], names[9]) == ("T-shirt/top", "Shirt", "Ankle boot")


# ---------------------------------------------------------------- the real data


@pytest.fixture
def real_dir():
    """The folder with the genuine files (FASHION_MNIST_DIR, else data/fashion); skips if they are absent."""
    folder = mnist_reader.resolve_data_dir()
    missing = [name for name in mnist_reader.FILES if not (folder / name).is_file()]
    if missing:
        source = "FASHION_MNIST_DIR" if os.environ.get("FASHION_MNIST_DIR") else "the default folder"
        pytest.skip(
            f"real Fashion-MNIST not found: {source} {folder} lacks {', '.join(missing)} "
            "(set FASHION_MNIST_DIR to a folder with the four files, or run `make run`)"
        )
    return folder


@pytest.mark.real_data
def test_real_data_checksums(real_dir):
    for name, expected in mnist_reader.FILES.items():
        assert hashlib.md5((real_dir / name).read_bytes()).hexdigest() == expected, name


@pytest.mark.real_data
def test_real_data_loads(real_dir):
    X_train, y_train, X_val, y_val, X_test, y_test = mnist_reader.load_fashion_mnist(real_dir)

    assert (X_train.shape, X_val.shape, X_test.shape) == ((54000, 784), (6000, 784), (10000, 784))
    assert (y_train.shape, y_val.shape, y_test.shape) == ((54000,), (6000,), (10000,))
    # The published set is balanced: 6,000 training and 1,000 test images per class.
    np.testing.assert_array_equal(np.bincount(np.concatenate([y_train, y_val]), minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), [1000] * 10)
    assert X_train.dtype == np.float32
    assert (X_train.min(), X_train.max()) == (0.0, 1.0)


def _touch_data(folder, names):
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


ALL_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte.gz"]


def test_require_files_accepts_gz_or_raw(tmp_path):
    _touch_data(tmp_path / "d", ALL_FILES)
    assert mnist_reader.require_files(tmp_path / "d") == tmp_path / "d"


@pytest.mark.parametrize("missing", ALL_FILES)
def test_require_files_says_how_to_get_the_data(tmp_path, missing):
    _touch_data(tmp_path / "d", [n for n in ALL_FILES if n != missing])
    stem = missing.removesuffix(".gz")
    with pytest.raises(FileNotFoundError, match=re.escape(stem)) as error:
        mnist_reader.require_files(tmp_path / "d")
    for hint in ("download_fashion_mnist", "FASHION_MNIST_DIR", str(tmp_path / "d")):
        assert hint in str(error.value)


# ---------------------------------------------------------------- bad paths, bad labels, permissions


def test_labels_outside_the_ten_classes_are_refused(tmp_path):
    labels = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    labels[3] = 12
    write_split(tmp_path, "train", numbered_images(N_TRAIN), labels)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz holds label 12.*classes are 0..9"):
        mnist_reader.load_mnist(tmp_path, "train")


def test_a_data_path_that_is_a_file_says_a_folder_is_expected(tmp_path, fake_files):
    not_a_folder = tmp_path / "fashion"
    not_a_folder.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is a file, but the data path must be the folder"):
        mnist_reader.load_fashion_mnist(not_a_folder)
    with pytest.raises(FileNotFoundError, match="is a file, but the data path must be the folder"):
        mnist_reader.require_files(not_a_folder)
    with pytest.raises(FileNotFoundError, match="needs a folder"):
        stub_download(not_a_folder, fake_files)


def test_downloaded_files_are_readable_by_others_and_a_stale_partial_download_goes(tmp_path, fake_files):
    stale = tmp_path / f".{next(iter(fake_files))}.abc123.tmp"  # left by a download killed part-way
    stale.write_bytes(b"half a file")
    stub_download(tmp_path, fake_files)
    assert files_in(tmp_path) == sorted(fake_files)
    assert all((tmp_path / name).stat().st_mode & 0o777 == 0o644 for name in fake_files)


# ---------------------------------------------------------------- load_fashion_mnist reads only the genuine files


SPLIT_FILES = {"train": ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"],
               "t10k": ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]}


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_files_that_are_not_fashion_mnist_are_refused_naming_the_file(tmp_path, gz):
    folder = write_fake(tmp_path / "fake", gz=gz)  # well-formed idx files under the official names, not the data set
    first = "train-images-idx3-ubyte" + (".gz" if gz else "")
    expected = (mnist_reader.FILES if gz else mnist_reader.RAW_MD5S)[first]

    with pytest.raises(mnist_reader.ChecksumError) as error:
        mnist_reader.load_fashion_mnist(folder)

    message = str(error.value)
    assert str(folder / first) in message
    assert hashlib.md5((folder / first).read_bytes()).hexdigest() in message and expected in message
    for hint in ("delete it", "download_fashion_mnist", "FASHION_MNIST_DIR", "load_mnist"):
        assert hint in message
    # The same files are fine data for the generic reader, which checks no MD5.
    images, labels = mnist_reader.load_mnist(folder, "train")
    assert (images.shape, labels.shape) == ((N_TRAIN, 784), (N_TRAIN,))


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_each_file_read_is_checked(tmp_path, monkeypatch, gz):
    """Any one of the four files replaced by another is refused, and named; the others pass."""
    folder = write_fake(tmp_path / "fake", gz=gz)
    trust(monkeypatch, folder)
    mnist_reader.load_fashion_mnist(folder)  # the trusted files load
    suffix = ".gz" if gz else ""
    for kind, names in SPLIT_FILES.items():
        for name in names:
            file = folder / (name + suffix)
            genuine = file.read_bytes()
            damaged = bytearray(genuine)
            damaged[-1] ^= 1  # a single bit; for raw files the idx structure stays valid
            file.write_bytes(bytes(damaged))
            with pytest.raises(mnist_reader.ChecksumError, match=re.escape(str(file))):
                mnist_reader.load_fashion_mnist(folder)
            if not gz:  # the damaged raw file is still a valid idx file, which load_mnist reads
                mnist_reader.load_mnist(folder, kind)
            file.write_bytes(genuine)


def test_files_swapped_between_the_splits_are_refused_and_said_to_be(tmp_path, monkeypatch):
    folder = write_fake(tmp_path / "fake")
    trust(monkeypatch, folder)
    # The folder a careless copy makes: the training files are the test files.
    for name in SPLIT_FILES["train"]:
        test_name = name.replace("train", "t10k")
        (folder / f"{name}.gz").write_bytes((folder / f"{test_name}.gz").read_bytes())

    with pytest.raises(mnist_reader.ChecksumError) as error:
        mnist_reader.load_fashion_mnist(folder)

    message = str(error.value)
    assert str(folder / "train-images-idx3-ubyte.gz") in message
    assert "it is t10k-images-idx3-ubyte.gz, under the wrong name" in message
    # Read without the check, the swapped folder would load: train and test then hold the same images.
    train_images, _ = mnist_reader.load_mnist(folder, "train")
    test_images, _ = mnist_reader.load_mnist(folder, "t10k")
    np.testing.assert_array_equal(train_images, test_images)


def test_only_the_file_read_is_checked(tmp_path, monkeypatch):
    """The reader prefers the .gz file: an uncompressed file beside it is neither read nor checked."""
    folder = write_fake(tmp_path / "fake")
    trust(monkeypatch, folder)
    (folder / "train-images-idx3-ubyte").write_bytes(b"not read")
    X_train, *_ = mnist_reader.load_fashion_mnist(folder)
    assert len(X_train) == N_TRAIN - N_VAL
    # Without the .gz file, the uncompressed one is read, and refused.
    (folder / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(mnist_reader.ChecksumError, match=re.escape(str(folder / "train-images-idx3-ubyte"))):
        mnist_reader.load_fashion_mnist(folder)


def test_a_folder_marked_as_a_stand_in_is_read_without_the_check(tmp_path):
    folder = write_fake(tmp_path / "fake")
    with pytest.raises(mnist_reader.ChecksumError):
        mnist_reader.load_fashion_mnist(folder)
    (folder / mnist_reader.STAND_IN_MARKER).write_text("synthetic data for a test\n")
    X_train, y_train, *_ = mnist_reader.load_fashion_mnist(folder)
    assert (X_train.shape, y_train.shape) == ((N_TRAIN - N_VAL, 784), (N_TRAIN - N_VAL,))


def test_the_tests_fake_data_set_is_marked_as_a_stand_in(tmp_path):
    """The notebook's tests run it on idx_files' fake data set, through load_fashion_mnist."""
    from idx_files import write_fake_fashion_mnist

    folder = write_fake_fashion_mnist(tmp_path / "fake", n_train=100, n_test=20)
    X_train, *_, X_test, _ = mnist_reader.load_fashion_mnist(folder)
    assert (len(X_train), len(X_test)) == (90, 20)


def test_verify_file_knows_only_the_eight_names(tmp_path):
    other = tmp_path / "emnist-images-idx3-ubyte.gz"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="not one of Fashion-MNIST's files"):
        mnist_reader.verify_file(other)


@pytest.mark.real_data
def test_the_genuine_files_pass_gzipped_or_not(real_dir, tmp_path):
    """Each genuine .gz file matches its published MD5, and the same file decompressed matches RAW_MD5S; a folder of
    the uncompressed files loads exactly as the .gz files do."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for name in mnist_reader.FILES:
        mnist_reader.verify_file(real_dir / name)
        raw = raw_dir / name.removesuffix(".gz")
        raw.write_bytes(gzip.decompress((real_dir / name).read_bytes()))
        mnist_reader.verify_file(raw)
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(mnist_reader.RAW_MD5S)

    for from_gz, from_raw in zip(mnist_reader.load_fashion_mnist(real_dir, seed=3),
                                 mnist_reader.load_fashion_mnist(raw_dir, seed=3), strict=True):
        np.testing.assert_array_equal(from_gz, from_raw)


@pytest.mark.real_data
@pytest.mark.parametrize("swap", ["test files as training files", "training files as test files"])
def test_the_genuine_files_under_each_other_s_names_are_refused(real_dir, tmp_path, swap):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in mnist_reader.FILES:
        source = name
        if swap == "test files as training files" and name.startswith("train"):
            source = name.replace("train", "t10k")
        if swap == "training files as test files" and name.startswith("t10k"):
            source = name.replace("t10k", "train")
        (folder / name).symlink_to(real_dir / source)
    wrong = "train-images-idx3-ubyte.gz" if swap.startswith("test") else "t10k-images-idx3-ubyte.gz"
    genuine = wrong.replace("train", "t10k") if swap.startswith("test") else wrong.replace("t10k", "train")

    with pytest.raises(mnist_reader.ChecksumError) as error:
        mnist_reader.load_fashion_mnist(folder)

    message = str(error.value)
    assert f"{folder / wrong} is not Fashion-MNIST's {wrong} (it is {genuine}, under the wrong name)" in message
