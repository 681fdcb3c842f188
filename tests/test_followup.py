"""study.followup: the learning rates beyond the grid's largest, beside the grid's runs, and the verdict."""

import pandas as pd
import pytest

from study import followup, grid

BEST = {"layers": (784, 256, 128, 10), "lr": 0.1, "L2_lambda": 0.0}


def log(rows):
    return pd.DataFrame([{"layers": layers, "lr": lr, "L2_lambda": l2, "best_val_acc": acc, "best_val_loss": loss,
                          "train_time_s": 10.0, "best_iteration": 100, "diverged": diverged}
                         for layers, lr, l2, acc, loss, diverged in rows], columns=grid.LOG_COLUMNS)


GRID = log([("784-256-128-10", 0.05, 0.0, 0.8965, 0.29, False),
            ("784-256-128-10", 0.1, 0.0, 0.9032, 0.28, False),
            ("784-256-128-10", 0.1, 0.001, 0.8975, 0.28, False),  # other L2: not in the table
            ("784-128-64-10", 0.1, 0.0, 0.8975, 0.28, False)])  # other architecture: not either


def test_the_table_sets_the_follow_up_beside_the_grids_runs_of_the_same_network():
    more = log([("784-256-128-10", 0.5, 0.0, float("nan"), float("nan"), True),
                ("784-256-128-10", 0.2, 0.0, 0.9050, 0.27, False),
                ("784-256-128-10", 0.3, 0.0, 0.9041, 0.28, False)])
    table = followup.lr_table(GRID, more, BEST)
    assert list(table.columns) == followup.COLUMNS
    assert list(table["lr"]) == [0.05, 0.1, 0.2, 0.3, 0.5]
    assert list(table["source"]) == ["grid", "grid", "follow-up", "follow-up", "follow-up"]
    found = followup.verdict(table, BEST)
    assert found == {"peak_lr": 0.2, "peak_val_acc": 0.9050, "chosen_lr": 0.1, "chosen_val_acc": 0.9032,
                     "gain_points": pytest.approx(0.18), "largest_lr": False, "changes_choice": True,
                     "diverged_lrs": [0.5]}
    assert followup.describe_verdict(found, BEST["layers"], 0.0) == (
        "On 784-256-128-10 with L2 0 the validation accuracy peaks at lr 0.2 (0.9050). Chosen on validation alone, "
        "the learning rate would move from 0.1 to 0.2, for +0.18 points of validation accuracy. Diverged: lr 0.5.")


def test_the_choice_stays_when_larger_rates_do_no_better():
    more = log([("784-256-128-10", 0.2, 0.0, 0.9010, 0.29, False), ("784-256-128-10", 0.3, 0.0, 0.8990, 0.3, False)])
    found = followup.verdict(followup.lr_table(GRID, more, BEST), BEST)
    assert not found["changes_choice"] and found["peak_lr"] == 0.1 and found["gain_points"] == 0.0
    assert followup.describe_verdict(found, BEST["layers"], 0.0).endswith("The grid's choice, lr 0.1, stays.")


def test_a_peak_at_the_largest_rate_says_the_rise_has_not_stopped():
    more = log([("784-256-128-10", 0.2, 0.0, 0.9040, 0.29, False), ("784-256-128-10", 0.5, 0.0, 0.9060, 0.3, False)])
    found = followup.verdict(followup.lr_table(GRID, more, BEST), BEST)
    assert found["largest_lr"] and found["peak_lr"] == 0.5
    assert "the largest rate tried: the rise has not been seen to stop" in followup.describe_verdict(
        found, BEST["layers"], 0.0)


def test_an_equal_accuracy_is_decided_by_the_lower_loss():
    more = log([("784-256-128-10", 0.2, 0.0, 0.9032, 0.25, False)])
    assert followup.verdict(followup.lr_table(GRID, more, BEST), BEST)["peak_lr"] == 0.2


def test_nothing_usable_is_an_error():
    table = followup.lr_table(log([("784-256-128-10", 0.1, 0.0, float("nan"), float("nan"), True)]),
                              log([]), BEST)
    with pytest.raises(ValueError, match="no run"):
        followup.verdict(table, BEST)
