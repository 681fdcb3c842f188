"""study.seeds: the chosen settings with other seeds, logged and resumed, and their spread."""

import numpy as np
import pandas as pd
import pytest
from test_modules import rings, small_problem

from study import runs, seeds, stats


def problem():
    X_test, y_test = rings(60, seed=9)
    return (*small_problem(), X_test, y_test)


def settings(seed, **kwargs):
    return dict({"layers": [2, 8, 3], "lr": 0.1, "max_epoch": 3, "batch_size": 10, "print_iter": 4, "seed": seed},
                **kwargs)


def counting_fit(monkeypatch):
    """Count the runs trained in this process (``runs.dispatch`` with ``n_jobs=1`` calls ``runs.fit`` here)."""
    trained = []
    fit = runs.fit

    def fit_and_count(s, *args, **kwargs):
        trained.append(s["seed"])
        return fit(s, *args, **kwargs)

    monkeypatch.setattr(runs, "fit", fit_and_count)
    return trained


def test_each_seed_is_one_run_measured_on_validation_and_test(tmp_path):
    data = problem()
    table = seeds.seed_runs([settings(3), settings(1), settings(2)], *data, tmp_path / "log" / "seeds.csv",
                            progress=False)
    assert list(table["seed"]) == [3, 1, 2]  # the order asked for
    for row in table.to_dict("records"):
        model = runs.fit(settings(row["seed"]), *data[:4])
        assert row["best_val_acc"] == model.best_val_acc and row["best_iteration"] == model.best_iteration
        assert row["test_acc"] == model.evaluate(*data[4:])[0]
        assert (row["test_ci_low"], row["test_ci_high"]) == stats.accuracy_ci(round(row["test_acc"] * 60), 60)
    assert len(set(table["best_val_acc"])) > 1  # other seeds, other runs


def test_two_at_a_time_gives_the_same_runs(tmp_path):
    data = problem()
    serial = seeds.seed_runs([settings(1), settings(2)], *data, tmp_path / "a.csv", progress=False)
    parallel = seeds.seed_runs([settings(1), settings(2)], *data, tmp_path / "b.csv", n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(serial.drop(columns="train_time_s"), parallel.drop(columns="train_time_s"))


def test_runs_in_the_log_are_not_trained_again_unless_fresh(tmp_path, monkeypatch):
    data, log_path = problem(), tmp_path / "seeds.csv"
    trained = counting_fit(monkeypatch)
    first = seeds.seed_runs([settings(1), settings(2)], *data, log_path, progress=False)
    assert trained == [1, 2]
    again = seeds.seed_runs([settings(1), settings(2), settings(3)], *data, log_path, progress=False)
    assert trained == [1, 2, 3]  # only the new seed
    pd.testing.assert_frame_equal(again.iloc[:2], first)
    assert len(pd.read_csv(log_path)) == 3
    seeds.seed_runs([settings(1)], *data, log_path, fresh=True, progress=False)
    assert trained == [1, 2, 3, 1]
    assert len(pd.read_csv(log_path)) == 1 and len(pd.read_csv(log_path.with_name("seeds.csv.bak"))) == 3


def test_rows_of_other_settings_or_data_are_not_taken(tmp_path, monkeypatch):
    data, log_path = problem(), tmp_path / "seeds.csv"
    trained = counting_fit(monkeypatch)
    seeds.seed_runs([settings(1)], *data, log_path, progress=False)
    seeds.seed_runs([settings(1, lr=0.05)], *data, log_path, progress=False)
    other_data = (data[0][::-1].copy(), data[1][::-1].copy(), *data[2:])
    seeds.seed_runs([settings(1)], *other_data, log_path, progress=False)
    assert trained == [1, 1, 1]
    assert len(pd.read_csv(log_path)) == 3


def test_a_row_torn_by_a_crash_is_trained_again(tmp_path, monkeypatch):
    data, log_path = problem(), tmp_path / "seeds.csv"
    first = seeds.seed_runs([settings(1), settings(2)], *data, log_path, progress=False)
    log_path.write_text(log_path.read_text()[:-10])  # the last row cut short
    trained = counting_fit(monkeypatch)
    again = seeds.seed_runs([settings(1), settings(2)], *data, log_path, progress=False)
    assert trained == [2]
    pd.testing.assert_frame_equal(again.drop(columns="train_time_s"), first.drop(columns="train_time_s"))
    assert len(pd.read_csv(log_path)) == 2
    log_path.write_text("seed,ke")  # not even the header whole
    assert len(seeds.seed_runs([settings(1)], *data, log_path, progress=False)) == 1


def test_a_log_of_another_kind_and_repeated_seeds_are_refused(tmp_path):
    data, log_path = problem(), tmp_path / "seeds.csv"
    log_path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a log of seed runs"):
        seeds.seed_runs([settings(1)], *data, log_path, progress=False)
    with pytest.raises(ValueError, match="its own seed"):
        seeds.seed_runs([settings(1), settings(1)], *data, tmp_path / "other.csv", progress=False)


def test_summary_places_the_single_run_and_the_original():
    table = pd.DataFrame({"seed": [1, 2, 3, 4], "best_val_acc": [0.90, 0.902, 0.898, 0.5],
                          "diverged": [False, False, False, True], "test_acc": [0.891, 0.893, 0.895, 0.1]})
    found = seeds.summary(table, {"seed": 0, "val_acc": 0.9032, "test_acc": 0.8927}, original=0.8932)
    assert found["seeds"] == [1, 2, 3, 4] and found["diverged"] == 1
    assert found["test"] == stats.spread([0.891, 0.893, 0.895])  # the diverged run is left out
    assert found["single_run"]["test"] == stats.position(0.8927, [0.891, 0.893, 0.895])
    assert found["single_run"]["val"]["below"] == 3  # above every other seed on validation
    assert found["original_test"] == stats.position(0.8932, [0.891, 0.893, 0.895])
    text = seeds.describe_summary(found)
    assert "3 seeds: validation accuracy 0.9000 +- 0.0020" in text
    assert "test accuracy 0.8930 +- 0.0020 (sd; 0.8910 to 0.8950)" in text
    assert "the grid's run (seed 0) on test: 0.8927, -0.2 sd from the seeds' mean, above 1 and below 2" in text
    assert "the original study on test: 0.8932, +0.1 sd" in text
    assert "original" not in seeds.describe_summary(seeds.summary(table, {"seed": 0, "val_acc": 0.9,
                                                                          "test_acc": 0.89}))
    assert np.isfinite(found["val"]["std"])


def test_the_seeds_log_takes_the_lock_like_every_search(tmp_path):
    log_path = tmp_path / "seeds.csv"
    with runs.exclusive(log_path), pytest.raises(runs.LogInUse, match="another search is writing"):
        seeds.seed_runs([settings(1)], *problem(), log_path, progress=False)
    assert not log_path.exists()
