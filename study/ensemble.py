"""An ensemble of MLPs: the average of its members' predicted probabilities.

Members that differ by their seed make partly different mistakes; averaging their probabilities (not their votes)
keeps each member's confidence. With ``flip_average=True`` every member also sees each image mirrored left to right
and its two predictions are averaged (test-time augmentation), for members trained with flips.
"""

import reprlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from doors import check_data, check_range, check_rows
from modules import EVAL_CHUNK_ROWS, MEASURE_DTYPE, MLP


def mirrored(X, side):
    """Rows of square ``side`` x ``side`` images, each mirrored left to right."""
    return X.reshape(len(X), side, side)[:, :, ::-1].reshape(len(X), -1)


class Ensemble:
    """The average of ``members``' predicted probabilities: ``MLP``s of the same input and output sizes, as a list or
    as a dict ``{name: MLP}`` (the shape ``study.frontier.train_frontier`` returns them in), whose models it takes in
    the dict's order; ValueError, naming the member, for anything else. ``flip_average`` is True or False. The data
    it predicts must suit every member: none may have been trained on data of a far narrower range (see
    ``doors.check_range``), whatever the order of the members."""

    def __init__(self, members, flip_average=False):
        if isinstance(members, MLP | str | bytes | Path) or not isinstance(members, Iterable):
            got, hint = ("a single MLP", "pass [model]") if isinstance(members, MLP) else \
                (reprlib.repr(members), "load saved models with Ensemble.from_files(paths)")
            raise ValueError(f"members must be a list or a dict of MLPs, got {got}: {hint}")
        labelled = [(f"member {name!r}", model) for name, model in members.items()] if isinstance(members, Mapping) \
            else [(f"member {k}", model) for k, model in enumerate(members, start=1)]
        if not labelled:
            raise ValueError("an ensemble needs at least one member")
        for label, model in labelled:
            if not isinstance(model, MLP):
                raise ValueError(f"{label} is {reprlib.repr(model)}, not an MLP: load saved models with "
                                 "Ensemble.from_files(paths)")
        first_label, first = labelled[0]
        for label, model in labelled:
            if (model.layers[0], model.layers[-1]) != (first.layers[0], first.layers[-1]):
                raise ValueError(f"members must share their input and output sizes, but {label} maps "
                                 f"{model.layers[0]} inputs to {model.layers[-1]} classes and {first_label} maps "
                                 f"{first.layers[0]} inputs to {first.layers[-1]} classes: an ensemble averages "
                                 "models of one task")
        if not isinstance(flip_average, bool | np.bool_):
            raise ValueError(f"flip_average must be True or False, got {flip_average!r}")
        side = round(first.layers[0] ** 0.5)
        if flip_average and side * side != first.layers[0]:
            raise ValueError(f"flip_average needs square images; the members take {first.layers[0]} inputs")
        self.labels, self.members = [label for label, _ in labelled], [model for _, model in labelled]
        self.flip_average, self.side = bool(flip_average), side

    @classmethod
    def from_files(cls, paths, flip_average=False):
        """The ensemble of the models saved at ``paths`` (``MLP.save_param`` archives)."""
        if isinstance(paths, str | bytes | Path):
            raise ValueError(f"paths must list the members' files, got the single path {paths!r}: pass [path]")
        return cls([MLP.from_file(path, print_log=False) for path in paths], flip_average=flip_average)

    @property
    def layers(self):
        return self.members[0].layers

    def probabilities(self, X):
        """X (N, D) -> the members' mean probabilities (N, C)."""
        return self.growing_probabilities(X)[-1]

    def growing_probabilities(self, X):
        """X (N, D) -> (members, N, C): at ``[k - 1]``, the mean probabilities of the first ``k`` members, each as
        the ensemble of those ``k`` alone gives them, bit for bit (the same sums in the same order), for the price of
        the whole ensemble's. Computed in chunks of ``EVAL_CHUNK_ROWS`` rows, in ``MEASURE_DTYPE`` as
        ``MLP.evaluate`` measures."""
        X, _ = self.checked(X)
        grown = np.empty((len(self.members), len(X), self.layers[-1]))
        for start in range(0, len(X), EVAL_CHUNK_ROWS):
            chunk = X[start:start + EVAL_CHUNK_ROWS].astype(MEASURE_DTYPE)
            views = (chunk, mirrored(chunk, self.side)) if self.flip_average else (chunk,)
            total = 0
            for k, member in enumerate(self.members, start=1):
                for view in views:
                    total = total + member.forward(view)
                grown[k - 1, start:start + len(chunk)] = total / (k * len(views))
        return grown

    def predict(self, X):
        """X (N, D) -> predicted labels (N,)."""
        return self.probabilities(X).argmax(axis=1)

    def evaluate(self, X, y):
        """(accuracy, mean cross-entropy of the averaged probabilities) on (X, y)."""
        X, y = self.checked(X, y)
        return scores(self.probabilities(X), y)

    def checked(self, X, y=None):
        """``(X, y)`` as the members compute with them (``y`` None for a prediction); ValueError if they cannot be
        rows (and labels) of the members (``doors.check_data``), or if X reaches far beyond the range of any
        member's training data, naming that member."""
        name = "prediction" if y is None else "evaluation"
        if y is None:
            X, data_range = check_rows(X, self.members[0], name)
        else:
            X, y, data_range = check_data(X, y, self.members[0], name)
        for label, member in zip(self.labels, self.members, strict=True):
            try:
                check_range(name, data_range, member.data_range)
            except ValueError as error:
                raise ValueError(f"ensemble {label} of {len(self.members)} cannot take this data: {error}") from None
        return X, y


def scores(probabilities, y):
    """(accuracy, mean cross-entropy) of predicted ``probabilities`` (N, C) on the labels ``y`` (N,)."""
    picked = np.maximum(probabilities[np.arange(len(y)), y], np.finfo(probabilities.dtype).tiny)
    return float(np.mean(probabilities.argmax(axis=1) == y)), float(-np.mean(np.log(picked)))
