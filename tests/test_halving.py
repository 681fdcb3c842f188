import json
import math

import numpy as np
import pandas as pd
import pytest

import solver
from modules import MLP
from study import config, halving, recipes, runs

# 4 batches an epoch; the step schedule decays every 3 batches, so decay steps straddle the rungs' boundaries.
MODEL_KWARGS = {"batch_size": 50, "print_iter": 2, "seed": 0, "decay_steps": 3, "decay_factor": 0.9}
KEY = ["layers", "lr", "L2_lambda"]
NUMBERS = ["epochs", "best_val_acc", "best_val_loss", "best_iteration", "diverged"]


@pytest.fixture
def settings_grid():
    """9 settings: with factor 3, rungs of 9, 3 and 1 runs."""
    return config.make_grid([0.01, 0.05, 0.2], [(20, 8, 3)], [0.0, 1e-3, 1e-2])


def search(settings_grid, data, log_path, **kwargs):
    options = {"factor": 3, "min_epochs": 2, "max_epochs": 18, "progress": False, **MODEL_KWARGS, **kwargs}
    return halving.halving_search(settings_grid, *data, log_path, **options)


@pytest.fixture
def epochs_trained(monkeypatch):
    """Counts the epochs actually trained (in this process), through the real MLP: each call of ``train`` adds the
    epochs by which it moved the model's ``epoch``."""
    count = [0]
    real = MLP.train

    def counting(self, *args, **kwargs):
        before = self.epoch
        result = real(self, *args, **kwargs)
        count[0] += self.epoch - before
        return result

    monkeypatch.setattr(MLP, "train", counting)
    return count


def ranked(rows):
    """Best first by the search's rule, computed here independently: accuracy down, then loss up."""
    return rows.sort_values(["best_val_acc", "best_val_loss"], ascending=[False, True], kind="mergesort")


def test_rung_plan():
    assert halving.rung_plan(9, factor=3, min_epochs=2, max_epochs=18) == [(9, 2), (3, 6), (1, 18)]
    assert halving.rung_plan(48, factor=3, min_epochs=2, max_epochs=40) == [(48, 2), (16, 6), (6, 18), (2, 40)]
    # A single survivor trains straight to the end: nothing is left to compare it with.
    assert halving.rung_plan(9, factor=3, min_epochs=2, max_epochs=40) == [(9, 2), (3, 6), (1, 40)]
    assert halving.rung_plan(10, factor=2, min_epochs=1, max_epochs=100) == [(10, 1), (5, 2), (3, 4), (2, 8), (1, 100)]
    assert halving.rung_plan(5, factor=3, min_epochs=2, max_epochs=2) == [(5, 2)]
    assert halving.rung_plan(1, factor=3, min_epochs=2, max_epochs=40) == [(1, 40)]
    for n, factor, lo, hi in [(9, 3, 2, 18), (48, 3, 2, 40), (7, 2, 3, 50), (100, 4, 1, 30)]:
        plan = halving.rung_plan(n, factor, lo, hi)
        assert plan[-1][1] == hi
        for k, ((n_runs, epochs), (before, _)) in enumerate(zip(plan[1:], plan, strict=False), start=1):
            assert n_runs == math.ceil(before / factor)
            assert epochs == (hi if n_runs == 1 else min(lo * factor**k, hi))
    for bad in [(0, 3, 2, 40), (9, 1, 2, 40), (9, 2.5, 2, 40), (9, 3, 0, 40), (9, 3, 41, 40)]:
        with pytest.raises(ValueError):
            halving.rung_plan(*bad)


def test_log_holds_a_row_per_run_per_rung(data, settings_grid, tmp_path):
    log = search(settings_grid, data, tmp_path / "log" / "halving.csv")
    assert list(log.columns) == halving.HALVING_COLUMNS
    pd.testing.assert_frame_equal(halving.read_halving_log(tmp_path / "log" / "halving.csv"), log)
    assert log.groupby("rung").size().tolist() == [9, 3, 1]
    assert log.groupby("rung")["epochs"].unique().map(list).tolist() == [[2], [6], [18]]
    assert not log.duplicated(["rung", *KEY]).any()
    first = log[log["rung"] == 0]
    assert sorted(zip(first["lr"], first["L2_lambda"], strict=True)) == sorted(
        (s["lr"], s["L2_lambda"]) for s in settings_grid)
    assert log["best_val_acc"].between(0, 1).all()
    assert not log["diverged"].any()
    # The best-so-far numbers of a run never get worse from one rung to the next.
    by_run = log.sort_values("rung").groupby(KEY)["best_val_acc"]
    assert by_run.apply(lambda acc: acc.is_monotonic_increasing).all()


def test_survivors_are_the_top_of_their_rung(data, settings_grid, tmp_path):
    log = search(settings_grid, data, tmp_path / "halving.csv")
    def settings_of(rows):
        return set(map(tuple, rows[KEY].to_numpy()))

    for rung in (1, 2):
        before = ranked(log[log["rung"] == rung - 1])
        assert settings_of(log[log["rung"] == rung]) == settings_of(before.head(math.ceil(len(before) / 3)))
    # The ranking, not the grid's order, chose them: they are not the grid's first three settings.
    first_three = {(runs.layers_name(s["layers"]), s["lr"], s["L2_lambda"]) for s in settings_grid[:3]}
    assert settings_of(log[log["rung"] == 1]) != first_three


@pytest.mark.parametrize(
    "options",
    [{}, {"lr_schedule": "cosine"}, {"optimizer": "momentum", "dropout": 0.2, "lr_schedule": "cosine"}],
    ids=["step", "cosine", "momentum-dropout"],
)
def test_survivor_equals_an_uninterrupted_run(data, settings_grid, tmp_path, epochs_trained, options):
    log = search(settings_grid, data, tmp_path / "halving.csv", **options)
    final = log[log["rung"] == log["rung"].max()].iloc[0]
    # Continued, not retrained: 9 runs x 2 epochs, then 3 x 4 more, then 1 x 12 more.
    assert epochs_trained[0] == 9 * 2 + 3 * 4 + 1 * 12
    s = config.settings_from_row(final)
    model = MLP(list(s["layers"]), lr=s["lr"], L2_lambda=s["L2_lambda"], max_epoch=18, print_log=False,
                **MODEL_KWARGS, **options)
    model.train(*data)
    assert model.epoch == final["epochs"] == 18
    assert model.best_val_acc == final["best_val_acc"]
    assert model.best_val_loss == final["best_val_loss"]
    assert model.best_iteration == final["best_iteration"]


def test_halving_result(data, settings_grid, tmp_path):
    log = search(settings_grid, data, tmp_path / "halving.csv")
    result = halving.halving_result(log)
    final = log[log["rung"] == 2].iloc[0]
    assert result["settings"] == config.settings_from_row(final)
    assert result["settings"] in settings_grid
    assert result["best_val_acc"] == final["best_val_acc"]
    assert result["best_val_loss"] == final["best_val_loss"]
    assert result["rungs"] == 3
    # 6 runs stopped at 2 epochs, 2 at 6, 1 went on to 18.
    assert result["epochs_spent"] == 6 * 2 + 2 * 6 + 18


def _log(rows):
    return pd.DataFrame(
        [{"rung": rung, "layers": "20-8-3", "lr": lr, "L2_lambda": 0.0, "epochs": epochs,
          "best_val_acc": acc, "best_val_loss": loss, "best_iteration": 4, "diverged": div, "train_time_s": 0.1}
         for rung, lr, epochs, acc, loss, div in rows],
        columns=halving.HALVING_COLUMNS,
    )


def test_halving_result_skips_diverged_and_breaks_ties_on_loss():
    log = _log([
        (0, 0.1, 1, 0.70, 0.9, False),
        (0, 0.2, 1, 0.80, 0.8, False),
        (0, 0.3, 1, 0.90, 0.7, False),
        (0, 9.0, 1, np.nan, np.nan, True),
        (1, 0.2, 3, 0.85, 0.6, False),
        (1, 0.3, 2, 0.95, 0.5, True),  # best accuracy, but diverged in its second epoch
        (1, 0.1, 3, 0.85, 0.5, False),  # same accuracy as 0.2, lower loss
    ])
    result = halving.halving_result(log)
    assert result["settings"] == {"layers": (20, 8, 3), "lr": 0.1, "L2_lambda": 0.0}
    assert result["best_val_acc"] == 0.85 and result["best_val_loss"] == 0.5
    assert result["epochs_spent"] == 3 + 3 + 2 + 1
    assert result["rungs"] == 2
    with pytest.raises(ValueError, match="non-diverged"):
        halving.halving_result(log[log["lr"].isin([0.3, 9.0])])


def test_diverged_runs_rank_last(data, tmp_path):
    settings_grid = config.make_grid([1e5, 0.1, 2e5], [(20, 8, 3)], [0.0])
    log = search(settings_grid, data, tmp_path / "halving.csv", factor=2, min_epochs=1, max_epochs=2)
    assert log.groupby("rung").size().tolist() == [3, 2]
    assert list(log.loc[log["rung"] == 0, "diverged"]) == [True, False, True]
    last = log[log["rung"] == 1].set_index("lr")
    # The run that learns comes first; a diverged one fills the second place (the first in grid order), and a
    # diverged run trains no further.
    assert set(last.index) == {0.1, 1e5}
    assert not last.loc[0.1, "diverged"] and last.loc[0.1, "epochs"] == 2
    assert last.loc[1e5, "diverged"] and last.loc[1e5, "epochs"] == 1
    result = halving.halving_result(log)
    assert result["settings"]["lr"] == 0.1
    assert result["epochs_spent"] == 1 + 2 + 1


def test_parallel_gives_the_same_log(data, settings_grid, tmp_path):
    # Momentum's velocities and dropout's generator must travel to the workers and back intact.
    options = {"optimizer": "momentum", "dropout": 0.2}
    serial = search(settings_grid, data, tmp_path / "serial.csv", n_jobs=1, **options)
    parallel = search(settings_grid, data, tmp_path / "parallel.csv", n_jobs=2, **options)
    found_serial, found_parallel = halving.halving_result(serial), halving.halving_result(parallel)
    columns = ["rung", *KEY, *NUMBERS]
    serial = serial[columns].sort_values(["rung", *KEY]).reset_index(drop=True)
    parallel = parallel[columns].sort_values(["rung", *KEY]).reset_index(drop=True)
    pd.testing.assert_frame_equal(serial, parallel)
    same = {key: value for key, value in found_serial.items() if key != "train_time_s"}
    assert {key: found_parallel[key] for key in same} == same


def test_parallel_with_a_layer_over_a_megabyte(tmp_path):
    """joblib hands arrays over 1 MB to loky workers as read-only memory maps; the models must still train."""
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(100, 300)).astype(np.float32), rng.integers(0, 3, 100)
    settings_grid = config.make_grid([0.01, 0.05], [(300, 1000, 3)], [0.0])  # W1: 300 x 1000 float32 = 1.2 MB
    options = {"factor": 2, "min_epochs": 1, "max_epochs": 2, "progress": False, "batch_size": 50, "print_iter": 1}
    serial = halving.halving_search(settings_grid, X, y, X, y, tmp_path / "serial.csv", n_jobs=1, **options)
    parallel = halving.halving_search(settings_grid, X, y, X, y, tmp_path / "parallel.csv", n_jobs=2, **options)
    assert len(parallel) == 3
    columns = ["rung", *KEY, *NUMBERS]
    pd.testing.assert_frame_equal(serial[columns].sort_values(["rung", *KEY]).reset_index(drop=True),
                                  parallel[columns].sort_values(["rung", *KEY]).reset_index(drop=True))


def test_rows_are_on_disk_when_a_later_run_fails(data, settings_grid, tmp_path, monkeypatch):
    real = halving.train_rung

    def failing_in_rung_1(model, epochs, *args, **kwargs):
        if epochs == 6:
            raise RuntimeError("boom")
        return real(model, epochs, *args, **kwargs)

    monkeypatch.setattr(halving, "train_rung", failing_in_rung_1)
    with pytest.raises(RuntimeError, match="boom"):
        search(settings_grid, data, tmp_path / "halving.csv")
    log = halving.read_halving_log(tmp_path / "halving.csv")
    assert len(log) == 9
    assert (log["rung"] == 0).all()


def test_a_fresh_search_keeps_the_old_log_as_backup(data, settings_grid, tmp_path, capsys):
    log_path = tmp_path / "halving.csv"
    log_path.write_text("an older log\n")
    log = halving.halving_search(settings_grid[:2], *data, log_path, factor=2, min_epochs=1, max_epochs=2,
                                 fresh=True, **MODEL_KWARGS)
    assert log_path.with_name("halving.csv.bak").read_text() == "an older log\n"
    assert len(log) == 3
    assert "halving search" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.tmp"))
    recipe = json.loads(recipes.recipe_path(log_path).read_text())
    assert recipe["recipe"] == dict(MODEL_KWARGS, max_epoch=2)
    assert recipe["data"] == solver.fingerprint(*data)


def test_max_epoch_is_set_by_the_search(data, settings_grid, tmp_path):
    with pytest.raises(TypeError, match="max_epochs"):
        search(settings_grid, data, tmp_path / "halving.csv", max_epoch=5)
    assert not (tmp_path / "halving.csv").exists()


def test_compare_searches_looks_the_halving_pick_up_in_the_grid():
    log = pd.DataFrame({
        "layers": ["4-3", "4-3", "4-5-3"], "lr": [0.1, 0.01, 0.1], "L2_lambda": [0.0, 0.0, 0.01],
        "best_val_acc": [0.8, 0.9, 0.85], "best_val_loss": [0.5, 0.3, 0.4], "train_time_s": [1.0, 1.0, 2.0],
        "best_iteration": [10, 20, 30], "diverged": [False, False, False]})
    found = {"settings": {"layers": (4, 5, 3), "lr": 0.1, "L2_lambda": 0.01}, "epochs_spent": 7, "train_time_s": 0.5}
    table = halving.compare_searches(log, found, max_epoch=40)
    assert list(table["search"]) == ["grid", "successive halving"]
    assert list(table["settings"]) == ["4-3_lr0.01_L2_lambda0", "4-5-3_lr0.1_L2_lambda0.01"]
    assert list(table["best_val_acc"]) == [0.9, 0.85]
    assert list(table["epochs"]) == [120, 7]
    assert list(table["train_time_s"]) == [4.0, 0.5]


def test_a_finished_search_resumes_from_its_log_without_training(data, settings_grid, tmp_path, epochs_trained):
    log_path = tmp_path / "halving.csv"
    first = search(settings_grid, data, log_path)
    trained, text = epochs_trained[0], log_path.read_bytes()
    again = search(settings_grid, data, log_path)
    assert epochs_trained[0] == trained  # nothing trained the second time
    assert log_path.read_bytes() == text
    pd.testing.assert_frame_equal(again, first)


def test_an_interrupted_search_trains_only_what_its_log_lacks_and_ends_as_an_uninterrupted_one(
        data, settings_grid, tmp_path, epochs_trained):
    whole = search(settings_grid, data, tmp_path / "whole.csv")
    log_path = tmp_path / "halving.csv"
    search(settings_grid, data, log_path)
    lines = log_path.read_text().splitlines(keepends=True)
    log_path.write_text("".join(lines[:1 + 9 + 1]))  # rung 0 whole, one run of rung 1
    epochs_trained[0] = 0
    resumed = search(settings_grid, data, log_path)
    # Two runs of rung 1 start again from scratch (6 epochs each); the survivor then goes on from its 6 epochs to 18
    # if it is one of them, or trains all 18 from scratch if its rung 1 was read from the log.
    kept = runs.settings_key(halving.read_halving_log(log_path).iloc[9])
    survivor = runs.settings_key(whole[whole["rung"] == 2].iloc[0])
    assert epochs_trained[0] == 2 * 6 + (18 if survivor == kept else 12)
    columns = ["rung", *KEY, *NUMBERS]
    pd.testing.assert_frame_equal(resumed[columns], whole[columns])


def test_a_log_of_another_recipe_is_not_resumed(data, settings_grid, tmp_path):
    log_path = tmp_path / "halving.csv"
    search(settings_grid, data, log_path)
    with pytest.raises(ValueError, match="another recipe"):
        search(settings_grid, data, log_path, seed=1)
    search(settings_grid, data, log_path, seed=1, fresh=True)
    assert log_path.with_name("halving.csv.bak").exists()


def test_a_first_rung_that_would_measure_nothing_is_refused(data, settings_grid, tmp_path):
    with pytest.raises(ValueError, match=r"print_iter=1000.*measure no validation"):
        search(settings_grid, data, tmp_path / "halving.csv", print_iter=1000)
    assert not (tmp_path / "halving.csv").exists()
