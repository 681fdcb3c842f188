"""A teacher's targets for each view of each image (N, V, C): the Solver's augmentation says which view it drew, and
the student learns, on that view, the teacher's answer for it (``solver.views``, ``Solver.augmented``)."""

import numpy as np
import pytest

from kernels import moved_images
from modules import MLP
from solver import views


@pytest.mark.parametrize("shift, flip", [(1, True), (2, False), (0, True)])
def test_each_drawn_view_is_the_view_of_its_index(shift, flip):
    X = np.random.default_rng(1).random((64, 784)).astype(np.float32)
    model = MLP([784, 10], augment_shift=shift, augment_flip=flip, seed=3)
    batch, drawn = model.solver.augmented(X)
    moves, flips = views(shift, flip)
    assert len(moves) == (2 * shift + 1) ** 2 * (1 + flip) and len(set(map(tuple, np.c_[moves, flips]))) == len(moves)
    np.testing.assert_array_equal(batch, moved_images(X, 28, moves[drawn], flips[drawn]))
    assert len(set(drawn)) > 1


def test_a_student_learns_the_targets_of_the_views_it_draws():
    """Targets that name a class by the view alone: a network that sees the views can learn them only if each batch
    takes the targets of the views it drew."""
    rng = np.random.default_rng(0)
    X = np.zeros((300, 784), dtype=np.float32)
    X[:, 14 * 28:15 * 28] = rng.random((300, 28))  # a bright row, whose place tells the vertical move
    moves, _ = views(1, False)
    classes = moves[:, 0] + 1  # moved up: 0, not moved: 1, moved down: 2
    targets = np.broadcast_to(np.eye(10)[classes], (300, 9, 10)).copy()
    student = MLP([784, 32, 10], augment_shift=1, lr=0.5, max_epoch=30, batch_size=50, print_log=False, seed=0)
    student.train(X, targets, None, None)
    probe, drawn = student.solver.augmented(X)
    assert (student.predict(probe) == classes[drawn]).mean() > 0.9


def test_targets_for_another_set_of_views_are_refused_at_the_door():
    X = np.random.default_rng(2).random((10, 784)).astype(np.float32)
    student = MLP([784, 10], augment_shift=1, augment_flip=True, print_log=False)
    with pytest.raises(ValueError, match=r"draws 18 views .* solver.views\(1, True\)"):
        student.train(X, np.full((10, 9, 10), 0.1), None, None)
    with pytest.raises(ValueError, match="add up to 1"):
        student.train(X, np.full((10, 18, 10), 0.2), None, None)
    with pytest.raises(ValueError, match="does not augment"):
        MLP([784, 10], print_log=False).train(X, np.full((10, 1, 10), 0.1), None, None)
