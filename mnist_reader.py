"""Read, download and split the Fashion-MNIST data set.

Fashion-MNIST ships as four gzip-compressed files in the "idx" format that was
introduced with the original MNIST digits:

    train-images-idx3-ubyte.gz   60,000 images, 28x28 pixels
    train-labels-idx1-ubyte.gz   60,000 labels, 0..9 (see CLASS_NAMES)
    t10k-images-idx3-ubyte.gz    10,000 test images
    t10k-labels-idx1-ubyte.gz    10,000 test labels

An idx file is a header of big-endian 32-bit integers followed by raw data:

    magic number   two zero bytes, a type code (0x08 = unsigned byte) and the
                   number of dimensions; so 0x00000803 = 2051 for images
                   (3 dimensions) and 0x00000801 = 2049 for labels (1 dimension)
    one size per dimension: N, then rows and columns for images
    the data: N*rows*cols (or N) unsigned bytes, row-major, nothing after it

Pixels are 0 (background) to 255 (ink); each image becomes one row of 784
values.

`load_fashion_mnist` reads only the genuine files: each file it reads is
checked against its MD5 first (see `verify_file`), so that a folder holding,
say, the test files under the training files' names is refused instead of
putting the test images into the training set. `load_mnist` reads any data in
the same format and checks no MD5.
"""

import gzip
import hashlib
import http.client
import os
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fileio import atomic_write

__all__ = [
    "CLASS_NAMES",
    "FILES",
    "MIRROR_URL",
    "ChecksumError",
    "DownloadError",
    "download_fashion_mnist",
    "load_fashion_mnist",
    "load_mnist",
    "require_files",
    "resolve_data_dir",
    "verify_file",
]

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

MIRROR_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# The official files and their published MD5s. A module-level dict so that
# tests can swap in checksums of small fake files.
FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

# The MD5s of the same files decompressed, for a folder that holds them uncompressed (the reader takes either).
# Not published: computed from the decompressed genuine files, whose .gz MD5s are; tests/test_mnist_reader.py
# checks them against the real data.
RAW_MD5S = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

# A file of this name in a data folder says that the folder deliberately holds other data in Fashion-MNIST's
# format and names (a small synthetic stand-in for tests, say): load_fashion_mnist then checks no MD5.
STAND_IN_MARKER = "NOT-FASHION-MNIST"

ENV_VAR = "FASHION_MNIST_DIR"
DEFAULT_DATA_DIR = Path(__file__).parent / "data" / "fashion"

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
IMAGE_SIDE = 28

CHUNK_SIZE = 1 << 20
TIMEOUT_SECONDS = 60

HOW_TO_GET_DATA = (
    "Get Fashion-MNIST with `make run` (downloads it), or "
    "`python -c \"import mnist_reader; mnist_reader.download_fashion_mnist('{folder}')\"`, "
    f"or set {ENV_VAR} to a folder that already holds the four files."
)


class ChecksumError(ValueError):
    """A Fashion-MNIST file, downloaded or read, does not match its MD5."""


class DownloadError(OSError):
    """A file could not be fetched from the mirror."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder to read Fashion-MNIST from.

    In order of precedence: `data_dir` if given, else the environment variable
    FASHION_MNIST_DIR if set and non-empty, else `data/fashion` next to this module.
    The folder is not required to exist.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return DEFAULT_DATA_DIR


def require_files(data_dir: str | os.PathLike[str]) -> Path:
    """Return `data_dir` as a Path if it holds all four files, gzipped or not.

    Raises the FileNotFoundError that `load_mnist` would, which says how to get
    the data. Cheap (nothing is read), so that a notebook without data stops in
    its first cell rather than at its first load.
    """
    folder = Path(data_dir)
    for name in FILES:
        _find_file(folder, name.removesuffix(".gz"))
    return folder


def load_mnist(path: str | os.PathLike[str], kind: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read one split of an MNIST-style data set from the idx files in `path`.

    `kind` is "train" or "t10k". Reads `{kind}-images-idx3-ubyte` and
    `{kind}-labels-idx1-ubyte`, preferring the `.gz` version if both exist.

    Returns `(images, labels)`: uint8 arrays of shape (N, 784) and (N,). They
    are read-only views of the file contents (no copy is made); convert or
    copy them before modifying.

    Raises FileNotFoundError if a file is missing and ValueError if a file is
    not a valid idx file of 28x28 images / labels, or the two disagree on N.
    """
    return _load_split(Path(path), kind, verify=False)


def _load_split(folder: Path, kind: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """`load_mnist`, with each file checked by `verify_file` before it is read if `verify`."""
    if kind not in ("train", "t10k"):
        raise ValueError(f'kind must be "train" or "t10k", got {kind!r}')
    images_file = _find_file(folder, f"{kind}-images-idx3-ubyte")
    labels_file = _find_file(folder, f"{kind}-labels-idx1-ubyte")
    if verify:
        verify_file(images_file)
        verify_file(labels_file)

    images = _read_idx(images_file, IMAGE_MAGIC, (IMAGE_SIDE, IMAGE_SIDE))
    labels = _read_idx(labels_file, LABEL_MAGIC, ())
    if len(labels) and labels.max() >= len(CLASS_NAMES):
        raise ValueError(
            f"{labels_file} holds label {labels.max()}, but Fashion-MNIST's classes are 0..{len(CLASS_NAMES) - 1}; "
            "the file is corrupt or belongs to another data set: delete it and get it again"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels; "
            "the files do not belong together"
        )
    return images.reshape(len(images), IMAGE_SIDE * IMAGE_SIDE), labels


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load Fashion-MNIST, scaled, with a seeded train/validation split.

    The folder comes from `resolve_data_dir(data_dir)`. The 60,000 training
    rows are shuffled with `np.random.default_rng(seed).permutation`; the first
    `round(val_fraction * 60000)` of them form the validation set, the rest the
    training set (54,000 / 6,000 at the default 0.1).

    Returns `(X_train, y_train, X_val, y_val, X_test, y_test)`: the X arrays are
    C-contiguous float32 of shape (N, 784) with values in [0, 1] (pixel / 255),
    the y arrays int64 of shape (N,) with class indices 0..9 (see CLASS_NAMES).
    The test set keeps its file order.

    Each file read is first checked against its MD5 (`verify_file`: the
    published MD5 of a .gz file, that of the genuine decompressed file for an
    uncompressed one); a mismatch raises ChecksumError (a ValueError) naming
    the file. This reads each file once more, about 0.06 s for the four .gz
    files. A folder holding a file named STAND_IN_MARKER is taken as a
    deliberate stand-in in the same format and checked for structure only;
    `load_mnist` never checks MD5s.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    folder = resolve_data_dir(data_dir)
    verify = not (folder / STAND_IN_MARKER).is_file()
    train_images, train_labels = _load_split(folder, "train", verify)
    test_images, test_labels = _load_split(folder, "t10k", verify)

    n = len(train_images)
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction} leaves an empty split of the {n} training rows")
    order = np.random.default_rng(seed).permutation(n)
    val_rows, train_rows = order[:n_val], order[n_val:]

    return (
        _scale(train_images[train_rows]),
        train_labels[train_rows].astype(np.int64),
        _scale(train_images[val_rows]),
        train_labels[val_rows].astype(np.int64),
        _scale(test_images),
        test_labels.astype(np.int64),
    )


def download_fashion_mnist(
    dest: str | os.PathLike[str],
    base_url: str = MIRROR_URL,
    opener: Callable[..., Any] = urllib.request.urlopen,
) -> Path:
    """Download the four Fashion-MNIST files into folder `dest` and return it as a Path.

    Each file in FILES is fetched from `base_url` and checked against its MD5.
    Files already in `dest` with the right MD5 are left alone; anything else
    under that name is replaced. A file is written to a temporary name in
    `dest` and renamed only once complete and verified, so `dest` never holds
    a partial or corrupt file under an official name.

    `opener(url, timeout=...)` must return a context manager with a `read(size)`
    method, like `urllib.request.urlopen` does (tests pass a stub).

    Raises DownloadError (an OSError) if a URL cannot be fetched and
    ChecksumError (a ValueError) if a download has the wrong MD5.
    """
    folder = Path(dest)
    if folder.exists() and not folder.is_dir():
        raise FileNotFoundError(f"{folder} is a file: download_fashion_mnist needs a folder to put the four files in")
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected_md5 in FILES.items():
        target = folder / name
        if target.is_file() and _md5_of(target) == expected_md5:
            continue
        _download(base_url.rstrip("/") + "/" + name, target, expected_md5, opener)
    return folder


def verify_file(file: str | os.PathLike[str]) -> None:
    """Check that `file`, one of the four Fashion-MNIST files gzipped or not, is the genuine one.

    A .gz file is compared with its published MD5 (FILES), an uncompressed one with the MD5 of the genuine file
    decompressed (RAW_MD5S). Raises ChecksumError (a ValueError) naming the file and saying what to do, and
    ValueError for a name that is not one of the eight.
    """
    file = Path(file)
    expected = {**FILES, **RAW_MD5S}
    if file.name not in expected:
        raise ValueError(f"{file} is not one of Fashion-MNIST's files ({', '.join(FILES)}, or those uncompressed)")
    got = _md5_of(file)
    if got == expected[file.name]:
        return
    other = next((name for name, md5 in expected.items() if md5 == got), None)
    what = (f"it is {other}, under the wrong name" if other else
            f"its MD5 is {got}, the genuine file's is {expected[file.name]}")
    raise ChecksumError(
        f"{file} is not Fashion-MNIST's {file.name} ({what}): delete it and download the genuine files with "
        f"mnist_reader.download_fashion_mnist({str(file.parent)!r}) (or `make data`, into {ENV_VAR} or data/fashion), "
        f"or set {ENV_VAR} to a folder that holds them; mnist_reader.load_mnist reads other data in this format "
        "without checking MD5s."
    )


def _scale(pixels: np.ndarray) -> np.ndarray:
    # Dividing straight into a float32 result converts each array exactly once.
    return np.divide(pixels, np.float32(255), dtype=np.float32)


def _find_file(folder: Path, stem: str) -> Path:
    if folder.exists() and not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is a file, but the data path must be the folder that holds the four Fashion-MNIST files. "
            + HOW_TO_GET_DATA.format(folder=folder.parent)
        )
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Neither {stem}.gz nor {stem} found in {folder}. " + HOW_TO_GET_DATA.format(folder=folder)
    )


def _read_bytes(file: Path) -> bytes:
    with open(file, "rb") as raw:
        if file.suffix != ".gz":
            return raw.read()
        # Only decompression errors are caught here: an unreadable file should
        # surface as the OSError it is, not as "corrupt".
        try:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                return unzipped.read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            raise ValueError(f"{file} is not a valid gzip file ({err}); delete it and get it again") from err


def _read_idx(file: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Return the uint8 contents of idx `file` with shape (N, *item_shape)."""
    data = _read_bytes(file)
    header_size = 4 * (2 + len(item_shape))
    if len(data) < header_size:
        raise ValueError(
            f"{file} is too short ({len(data)} bytes) to hold an idx header ({header_size} bytes)"
        )

    header = np.frombuffer(data, dtype=">i4", count=2 + len(item_shape))
    found_magic, n, *found_shape = header.tolist()
    if found_magic != magic:
        raise ValueError(f"{file} has magic number {found_magic}, expected {magic}")
    if tuple(found_shape) != item_shape:
        raise ValueError(
            f"{file} has dimensions {'x'.join(map(str, found_shape))}, "
            f"expected {'x'.join(map(str, item_shape))}"
        )
    expected_size = header_size + n * int(np.prod(item_shape))
    if len(data) != expected_size:
        raise ValueError(
            f"{file} holds {len(data)} bytes but its header ({n} items) implies {expected_size}; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(n, *item_shape)


def _md5_of(file: Path) -> str:
    # MD5 only guards against damaged downloads here, not against attackers;
    # saying so keeps it usable on systems that restrict MD5 (FIPS mode).
    digest = hashlib.md5(usedforsecurity=False)
    with open(file, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_chunks(url: str, opener: Callable[..., Any], folder: Path) -> Iterator[bytes]:
    # Only errors raised while fetching are turned into DownloadError; errors
    # from the caller's writes (e.g. a full disk) pass through unchanged.
    try:
        with opener(url, timeout=TIMEOUT_SECONDS) as response:
            while chunk := response.read(CHUNK_SIZE):
                yield chunk
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(
            f"Could not download {url} ({err}). Check your connection, or place the files by hand "
            f"in {folder}, or set {ENV_VAR} to a folder that already holds them."
        ) from err


def _download(url: str, target: Path, expected_md5: str, opener: Callable[..., Any]) -> None:
    def fetch_and_check(out: Any) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        for chunk in _fetch_chunks(url, opener, target.parent):
            digest.update(chunk)
            out.write(chunk)
        got_md5 = digest.hexdigest()
        if got_md5 != expected_md5:
            raise ChecksumError(
                f"{target.name} downloaded from {url} has MD5 {got_md5}, expected {expected_md5}. "
                "The download was damaged or the mirror serves a different file; try again, or "
                f"place a good copy in {target.parent} by hand, or set {ENV_VAR} to a folder that holds one."
            )

    # Written under a temporary name and renamed only once complete and verified, with ordinary permissions; a
    # download killed part-way leaves a temporary file that the next attempt removes.
    atomic_write(target, fetch_and_check)
