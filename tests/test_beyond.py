import numpy as np
import pytest
from test_modules import small_problem

from study import beyond, runs


def candidates():
    base = {"layers": [2, 8, 3], "max_epoch": 3, "batch_size": 10, "print_iter": 4, "seed": 0}
    return [dict(base, optimizer="momentum", lr=0.05), dict(base, optimizer="adam", lr=0.01, dropout=0.2),
            dict(base, lr=1e20)]


def test_parallel_candidates_equal_serial_ones_and_the_best_is_chosen_on_validation():
    data = small_problem()
    serial = beyond.fit_candidates(candidates(), *data, n_jobs=1)
    parallel = beyond.fit_candidates(candidates(), *data, n_jobs=2)
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal([a.best_val_acc, a.best_val_loss, a.best_iteration],
                                      [b.best_val_acc, b.best_val_loss, b.best_iteration])
        np.testing.assert_array_equal(a.get_parameters()["W1"], b.get_parameters()["W1"])
    assert serial[2].diverged
    best = beyond.best_on_validation(serial)
    assert best.best_val_acc == max(m.best_val_acc for m in serial[:2])
    with pytest.raises(ValueError, match="every candidate diverged"):
        beyond.best_on_validation(serial[2:])


def test_comparison_row_measures_the_test_set_after_the_fact():
    X_train, y_train, X_val, y_val = small_problem()
    model = runs.fit(candidates()[1], X_train, y_train, X_val, y_val)
    row = beyond.comparison_row("adam", model, X_val, y_val)
    assert row["settings"] == "2-8-3, adam, lr 0.01, step schedule, no L2, dropout 0.2"
    assert row["test_accuracy"] == model.evaluate(X_val, y_val)[0]
    assert row["val_accuracy"] == model.best_val_acc
    assert row["epochs"] == 3


def test_class_changes_lists_the_largest_gain_first():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    before = np.array([0, 1, 0, 0, 2, 2])
    after = np.array([0, 0, 1, 0, 2, 1])
    table = beyond.class_changes(y_true, before, after, ["a", "b", "c"])
    assert list(table["class"]) == ["a", "b", "c"]  # a stable sort keeps ties in class order
    np.testing.assert_allclose(table["change"], [0.5, 0.5, -0.5])
