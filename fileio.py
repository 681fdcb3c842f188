"""Files: how every file of the project reaches the disk and how archives are read back; nothing of the network.

``atomic_write`` writes a file whole or not at all; ``read_archive`` reads an ``.npz`` archive without pickle and
without trusting its headers (``check_header``); ``write_model`` and ``read_model`` are the format of a model's
weights file; ``fingerprint`` tells one data set from another cheaply. The model,
the Solver and the study all write through here, so the study need not import the training machinery to write.
"""

import glob
import json
import math
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash part-way leaves the previous file (or none) at ``path``, never a half-written one, and the next write
    removes the temporary file it left. The new file gets the mode of the file it replaces, or an ordinary one
    (0644) when there was none.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A process killed mid-write (kill -9, power loss) could not remove its temporary file: this write does. A
    # temporary file names its writer's process, so another writer's live one is left alone (the last rename wins).
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if not writer_alive(stale.name[len(path.name) + 2:]):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode the file it replaces had, or an ordinary one.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def writer_alive(suffix):
    """Whether the process named by a temporary file's ``suffix`` (``"<pid>-<random>.tmp"``, :func:`atomic_write`)
    is running; a suffix that names none (an older temporary file) is taken as a dead writer's."""
    pid = suffix.split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


JSON_FIELDS = ("config", "run")  # the arrays of an archive that hold a JSON object: a model's settings, a run's state


def read_archive(path, required, kind, writer, only=None):
    """All arrays of the ``.npz`` archive at ``path`` (or those named in ``only``) as a dict, loaded without pickle.

    ValueError if it is not a ``kind`` (an archive holding the ``required`` arrays), naming the ``writer`` that makes
    one; also, before any array's data is read, if a header promises more bytes than its file holds: a forged header
    cannot make it allocate gigabytes; and if one of ``JSON_FIELDS`` is not a JSON object
    (:func:`json_object`). FileNotFoundError passes through as it is.
    """
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with archive:
            for name in archive.files:
                check_header(archive.zip, name)
            names = archive.files
            arrays = {name: archive[name] for name in names if only is None or name in only}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"{path} is not a readable {kind} ({error}); write it with {writer}") from None
    missing = set(required) - set(names)
    if missing:
        raise ValueError(f"{path} is not a {kind}: it lacks {sorted(missing)}; write it with {writer}")
    for name in JSON_FIELDS:
        if name in arrays:
            json_object(arrays, name, path, kind, writer)
    return arrays


def check_header(zip_file, name):
    """ValueError if the ``.npy`` header of array ``name`` in the open ``zip_file`` promises more bytes than the
    member holds."""
    member = zip_file.getinfo(f"{name}.npy")
    with zip_file.open(member) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    promised = math.prod(shape) * dtype.itemsize
    if promised > member.file_size:
        raise ValueError(f"the header of array {name} promises {promised:,} bytes but the file holds "
                         f"{member.file_size:,}")


def fingerprint(*arrays):
    """The shape, type and CRC-32 of each array: enough to tell that a run is being handed other data (a different
    split, subsample or preprocessing), at about 25 ms for the whole training set; ``"none"`` for an array not given
    (the validation set of a run without one)."""
    return ["none" if array is None else
            f"{array.dtype}{list(array.shape)}:{zlib.crc32(np.ascontiguousarray(array)):08x}" for array in arrays]


MODEL_FIELDS = ("layers", "activation", "config", "data_range")  # what a model archive holds besides parameters


def write_model(path, params, config, data_range=None):
    """Write a model's ``params`` (name -> array), its ``config`` (the constructor's arguments, as JSON, with
    ``layers`` and ``activation`` also as arrays of their own) and the range of its training data, if known, to one
    ``.npz`` archive at ``path``, atomically."""
    arrays = dict(params, layers=np.array(config["layers"], dtype=np.int64), activation=np.array(config["activation"]),
                  config=np.array(json.dumps(config)))
    if data_range is not None:
        arrays["data_range"] = np.array(data_range)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_model(path):
    """``(config, params, data_range)`` of an archive written by ``write_model``: archives that predate the recorded
    settings or range give the architecture alone (the settings take their defaults) and None. ValueError naming the
    file when its ``config`` or ``data_range`` has been edited into something else (:func:`read_archive`,
    :func:`read_data_range`)."""
    kind, writer = "model archive", "MLP.save_param"
    arrays = read_archive(path, ("layers", "activation"), kind, writer)
    config = {"layers": arrays["layers"].tolist(), "activation": str(arrays["activation"])}
    config.update(json.loads(str(arrays["config"])) if "config" in arrays else {})
    data_range = read_data_range(arrays, path, kind, writer)
    return config, {name: array for name, array in arrays.items() if name not in MODEL_FIELDS}, data_range


def json_object(arrays, name, path, kind, writer):
    """The JSON object held by the string array ``name`` of an archive's ``arrays`` (read from ``path``); ValueError
    naming the file when it is not JSON, or not an object."""
    try:
        value = json.loads(str(arrays[name]))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a readable {kind}: its {name} is not JSON ({error}); restore the file (from "
                         f"git, say) or write it again with {writer}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is not a readable {kind}: its {name} is a JSON {type(value).__name__}, not an "
                         f"object; restore the file (from git, say) or write it again with {writer}")
    return value


def read_data_range(arrays, path, kind, writer):
    """The ``(min, max)`` of the training data recorded in an archive's ``arrays``, or None when it has none;
    ValueError naming the file unless it is two finite numbers, the first not above the second (a NaN would turn the
    range check off)."""
    if "data_range" not in arrays:
        return None
    values = arrays["data_range"]
    if values.shape != (2,) or values.dtype.kind not in "iuf" or not np.isfinite(values).all() \
            or values[0] > values[1]:
        raise ValueError(f"{path} is not a readable {kind}: its data_range must be two finite numbers (min, max), "
                         f"got {values.tolist()!r}; restore the file (from git, say) or write it again with {writer}")
    return float(values[0]), float(values[1])
