"""An ensemble of MLPs: the average of its members' predicted probabilities.

Members that differ by their seed make partly different mistakes; averaging their probabilities (not their votes)
keeps each member's confidence. With ``flip_average=True`` every member also sees each image mirrored left to right
and its two predictions are averaged (test-time augmentation), for members trained with flips.
"""

import numpy as np

from modules import EVAL_CHUNK_ROWS, MLP
from solver import check_data, check_rows


def mirrored(X, side):
    """Rows of square ``side`` x ``side`` images, each mirrored left to right."""
    return X.reshape(len(X), side, side)[:, :, ::-1].reshape(len(X), -1)


class Ensemble:
    """The average of ``members``' (``MLP``s of the same input and output sizes) predicted probabilities."""

    def __init__(self, members, flip_average=False):
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        sizes = {(member.layers[0], member.layers[-1]) for member in members}
        if len(sizes) != 1:
            raise ValueError(f"members must share their input and output sizes, got {sorted(sizes)}")
        side = round(members[0].layers[0] ** 0.5)
        if flip_average and side * side != members[0].layers[0]:
            raise ValueError(f"flip_average needs square images; the members take {members[0].layers[0]} inputs")
        self.members, self.flip_average, self.side = members, flip_average, side

    @classmethod
    def from_files(cls, paths, flip_average=False):
        """The ensemble of the models saved at ``paths`` (``MLP.save_param`` archives)."""
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
        the whole ensemble's. Computed in chunks of ``EVAL_CHUNK_ROWS`` rows."""
        X, _ = check_rows(X, self.members[0], "prediction", self.members[0].data_range)
        grown = np.empty((len(self.members), len(X), self.layers[-1]))
        for start in range(0, len(X), EVAL_CHUNK_ROWS):
            chunk = X[start:start + EVAL_CHUNK_ROWS]
            views = (chunk, mirrored(chunk, self.side)) if self.flip_average else (chunk,)
            total = 0
            for k, member in enumerate(self.members, start=1):
                for view in views:
                    total = total + member.forward(view).astype(np.float64)
                grown[k - 1, start:start + len(chunk)] = total / (k * len(views))
        return grown

    def predict(self, X):
        """X (N, D) -> predicted labels (N,)."""
        return self.probabilities(X).argmax(axis=1)

    def evaluate(self, X, y):
        """(accuracy, mean cross-entropy of the averaged probabilities) on (X, y)."""
        X, y, _ = check_data(X, y, self.members[0], "evaluation", self.members[0].data_range)
        return scores(self.probabilities(X), y)


def scores(probabilities, y):
    """(accuracy, mean cross-entropy) of predicted ``probabilities`` (N, C) on the labels ``y`` (N,)."""
    picked = np.maximum(probabilities[np.arange(len(y)), y], np.finfo(probabilities.dtype).tiny)
    return float(np.mean(probabilities.argmax(axis=1) == y)), float(-np.mean(np.log(picked)))
