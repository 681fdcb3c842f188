"""The project's file I/O: every file is written atomically, and archives are read without pickle.

``atomic_write`` is how the model, the checkpoints, the logs' side files, the figures and the reports reach the disk;
``read_archive`` is how ``.npz`` archives come back. Neither knows anything of the network.
"""

import glob
import os
import tempfile
import zipfile
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
    # A process killed mid-write (kill -9, power loss) could not remove its temporary file: this write does. Each
    # file has one writer at a time in this project, so a temporary file of this name is never another's live one.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def read_archive(path, required, kind, writer):
    """All arrays of the ``.npz`` archive at ``path`` as a dict, loaded without pickle.

    ValueError if it is not a ``kind`` (an archive holding the ``required`` arrays); the message names the ``writer``
    that makes one. FileNotFoundError passes through as it is.
    """
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"{path} is not a readable {kind} ({error}); write it with {writer}") from None
    missing = set(required) - set(arrays)
    if missing:
        raise ValueError(f"{path} is not a {kind}: it lacks {sorted(missing)}; write it with {writer}")
    return arrays
