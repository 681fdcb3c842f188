"""The doors of ``study.records``: what a record's name may be, what its validation probabilities must hold, where a
hand-edited log row goes wrong, and a torn log row said once."""

import csv
import io
import re
import warnings

import numpy as np

from study import runs

WARNED = set()  # the warnings said already, with the torn row each is about


def warn_once(message, about):
    """Warn ``message`` (about the bytes ``about``) once a process: a torn row that every read of a log skips is
    said the first time only."""
    if (str(message), about) not in WARNED:
        WARNED.add((str(message), about))
        warnings.warn(message, stacklevel=3)


def row_problem(data, columns):
    """The first row of the log ``data`` (bytes) that has another number of cells than its header, or a cell of a
    numeric column that is not a number: ``"row 3 (name): ..."``; None when none."""
    lines = list(csv.reader(io.StringIO(runs.whole_rows(data).decode(errors="replace"))))
    numeric = [index for index, column in enumerate(columns) if runs.DTYPES.get(column) in (int, float)]
    for number, cells in enumerate(lines[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(lines[0]):
            return f"row {number} ({cells[0]}) has {len(cells)} cells where the header has {len(lines[0])}"
        for index in numeric:
            try:
                float(cells[index] or "nan")
            except ValueError:
                return f"row {number} ({cells[0]}): {columns[index]} {cells[index]!r} is not a number"
    return None


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_name(name):
    """ValueError unless ``name`` can name a record: letters, digits and ``_.+-``, starting with a letter or digit.
    A comma would split its row of the log, and a slash or a leading dot would put its files elsewhere."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"{name!r} cannot name a recorded run: use letters, digits and _ . + - only, starting with a "
                         "letter or digit (a comma would split its row of the log; a slash or a leading dot would "
                         "write its files outside the records' folders)")


def probability_problems(array, shape=None):
    """What keeps ``array`` from being probabilities of ``shape`` (rows of class probabilities): a list of phrases,
    empty when it is."""
    if array.ndim != 2 or (shape is not None and array.shape != tuple(shape)):
        return [f"has shape {array.shape}, expected {tuple(shape) if shape else '(rows, classes)'}"]
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        return ["holds values that are not finite numbers"]
    if array.min() < 0 or array.max() > 1 or not np.allclose(array.sum(axis=1), 1, atol=1e-3):
        return ["holds values that are not probabilities (each in [0, 1], each row summing to 1)"]
    return []
