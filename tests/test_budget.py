"""study.budget: section 7's epochs chosen on validation by the one-standard-error rule, from a resumable log."""

import math

import pandas as pd
import pytest
from test_modules import small_problem

from study import budget, config, runs


def settings(**kwargs):
    return dict({"layers": [2, 8, 3], "lr": 0.1, "batch_size": 10, "print_iter": 4, "seed": 0}, **kwargs)


def table(rows, val_images=6000):
    return pd.DataFrame([{"max_epoch": epochs, "key": "k", "best_val_acc": acc, "best_val_loss": 0.3,
                          "best_iteration": 1, "train_time_s": 1.0, "diverged": diverged, "val_images": val_images}
                         for epochs, acc, diverged in rows], columns=budget.LOG_COLUMNS)


def test_the_fewest_epochs_within_one_standard_error_of_the_best_are_chosen():
    se = math.sqrt(0.91 * 0.09 / 6000)  # 0.0037
    rows = [(30, 0.91 - 1.5 * se, False), (40, 0.91 - 0.5 * se, False), (50, 0.91, False), (60, 0.905, False)]
    chosen, threshold = budget.choose_budget(table(rows))
    assert chosen == 40
    assert threshold == pytest.approx(0.91 - se)
    # The same accuracies measured on fewer images have a wider error, which lets the 30 epochs in.
    assert budget.choose_budget(table(rows, val_images=1000))[0] == 30


def test_a_diverged_budget_is_never_chosen_and_all_diverged_is_an_error():
    assert budget.choose_budget(table([(10, 0.95, True), (20, 0.90, False)]))[0] == 20
    with pytest.raises(ValueError, match="every budget diverged"):
        budget.choose_budget(table([(10, 0.95, True)]))


def test_each_budget_trains_from_the_start_and_finished_ones_are_read_back(tmp_path, monkeypatch):
    data, log_path = small_problem(), tmp_path / "log" / "budget.csv"
    first = budget.budget_runs(settings(), [3, 1], *data, log_path, progress=False)
    assert list(first["max_epoch"]) == [3, 1]
    alone = runs.fit(settings(max_epoch=3), *data)  # the 3-epoch budget is a run of its own schedule
    assert first["best_val_acc"].iloc[0] == alone.best_val_acc

    trained = []
    fit = runs.fit
    monkeypatch.setattr(runs, "fit", lambda s, *a, **k: trained.append(s["max_epoch"]) or fit(s, *a, **k))
    again = budget.budget_runs(settings(), [1, 2, 3], *data, log_path, progress=False)
    assert trained == [2]
    assert list(again["max_epoch"]) == [1, 2, 3]
    assert again.set_index("max_epoch").loc[[1, 3], "best_val_acc"].tolist() == \
        first.set_index("max_epoch").loc[[1, 3], "best_val_acc"].tolist()

    other_data = (data[0] * 0.5, *data[1:])  # rows of other data are not reused
    budget.budget_runs(settings(), [1], *other_data, log_path, progress=False)
    assert trained == [2, 1]


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="distinct numbers of epochs"):
        budget.budget_runs(settings(), [2, 2], *small_problem(), "unused.csv", progress=False)
    for bad in ([], [0, 3]):
        with pytest.raises(ValueError, match="distinct numbers of epochs"):
            budget.budget_runs(settings(), bad, *small_problem(), "unused.csv", progress=False)


def test_the_wide_recipe_trains_the_epochs_that_the_committed_log_chose():
    log = budget.read_budget_log()
    assert budget.choose_budget(log)[0] == config.WIDE_RECIPE["max_epoch"]


@pytest.mark.real_data
def test_the_committed_log_was_made_with_the_wide_recipe_on_the_studys_split(fashion_mnist):
    X_train, y_train, X_val, y_val, _, _ = fashion_mnist
    log = budget.read_budget_log()
    wide = config.study_config(quick=False).wide_settings
    assert list(log["key"]) == [runs.run_key(dict(wide, max_epoch=epochs), (X_train, y_train, X_val, y_val))
                                for epochs in log["max_epoch"]]


def test_a_log_mixing_two_recipes_is_refused_or_read_for_the_settings_wanted(tmp_path):
    data, log_path = small_problem(), tmp_path / "budget.csv"
    budget.budget_runs(settings(), [1, 2], *data, log_path, progress=False)
    budget.budget_runs(settings(lr=0.05), [2], *data, log_path, progress=False)
    with pytest.raises(ValueError, match=r"logs the budgets \[2\] under two keys"):
        budget.read_budget_log(log_path)
    with pytest.warns(UserWarning, match="1 rows of other settings or other data left out"):
        mine = budget.read_budget_log(log_path, settings(), data)
    assert list(mine["max_epoch"]) == [1, 2]


def test_the_budget_log_takes_the_lock(tmp_path):
    log_path = tmp_path / "budget.csv"
    with runs.exclusive(log_path), pytest.raises(runs.LogInUse):
        budget.budget_runs(settings(), [1], *small_problem(), log_path, progress=False)
