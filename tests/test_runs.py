"""study.runs: what the grid search, successive halving and section 7 share."""

import json
import os

import joblib
import numpy as np
import pandas as pd
import pytest
from test_modules import small_problem
from threadpoolctl import threadpool_info

import solver
from modules import MLP
from study import config, grid, recipes, runs

# candidates()[1] of test_beyond: Adam with dropout, so that the optimizer state and the dropout generator resume too.
ADAM_DROPOUT = {"layers": [2, 8, 3], "max_epoch": 3, "batch_size": 10, "print_iter": 4, "seed": 0, "optimizer": "adam",
                "lr": 0.01, "dropout": 0.2}
TINY = {"max_epoch": 2, "batch_size": 50, "print_iter": 2, "seed": 0}


def test_fit_resumes_an_interrupted_run_from_its_checkpoint(tmp_path):
    data = small_problem()
    settings = ADAM_DROPOUT
    at_once = runs.fit(settings, *data)
    checkpoint = tmp_path / "run.npz"
    MLP(**dict(settings, print_log=False)).train(*data, epochs=1, checkpoint_path=checkpoint)  # then interrupted
    resumed = runs.fit(settings, *data, checkpoint_path=checkpoint)
    pd.testing.assert_frame_equal(resumed.history, at_once.history)
    np.testing.assert_array_equal(resumed.get_parameters()["W1"], at_once.get_parameters()["W1"])
    with pytest.raises(ValueError, match="holds a run of other settings"):
        runs.fit(dict(settings, lr=0.02), *data, checkpoint_path=checkpoint)


def test_one_vocabulary_from_the_constructor_to_the_log_and_the_file_names(data):
    settings = config.settings([20, 8, 3], 0.1, 0)
    assert settings == {"layers": (20, 8, 3), "lr": 0.1, "L2_lambda": 0.0}
    model = runs.fit(dict(settings, **TINY), *data)
    row = runs.log_row(settings, model)
    assert list(row)[:3] == runs.SETTINGS == ["layers", "lr", "L2_lambda"]
    assert row["layers"] == "20-8-3"
    # The outcome columns are the model's attribute names, holding the model's values.
    assert {name: getattr(model, name) for name in runs.OUTCOMES} == {name: row[name] for name in runs.OUTCOMES}
    assert config.settings_from_row(row) == settings
    # A settings dict, a log row and the model's own config() are the same run.
    assert runs.settings_key(settings) == runs.settings_key(row) == runs.settings_key(model.config())
    assert runs.settings_key(dict(row, lr=0.1 + 1e-17)) == runs.settings_key(row)  # float noise of a CSV round trip
    assert runs.run_name(settings) == runs.run_name(row) == "20-8-3_lr0.1_L2_lambda0"


def test_unique_settings_keeps_grid_order_and_the_first_of_duplicates():
    first = {"layers": (4, 3), "lr": 0.1, "L2_lambda": 0.0}
    again = {"layers": [4, 3], "lr": 0.1, "L2_lambda": 0.0, "note": "the same run"}
    other = {"layers": (4, 5, 3), "lr": 0.01, "L2_lambda": 0.001}
    unique = runs.unique_settings([first, other, again])
    assert list(unique.values()) == [first, other]
    assert list(unique) == [runs.settings_key(first), runs.settings_key(other)]


def _log(rows):
    return pd.DataFrame([{"layers": "4-3", "lr": lr, "L2_lambda": 0.0, "best_val_acc": acc, "best_val_loss": loss,
                          "train_time_s": 1.0, "best_iteration": 10, "diverged": diverged}
                         for lr, acc, loss, diverged in rows], columns=grid.LOG_COLUMNS)


def test_ranked_is_solver_rank_key_stable_and_drops_unusable_runs():
    log = _log([
        (0.1, 0.80, 0.5, False),
        (0.2, 0.95, 0.2, True),  # best accuracy, but diverged
        (0.3, 0.88, 0.40, False),
        (0.4, 0.88, 0.35, False),  # same accuracy, lower loss
        (0.5, np.nan, np.nan, False),  # no finite numbers
        (0.6, 0.88, 0.35, False),  # an exact tie with 0.4: keeps its place after it
    ])
    assert list(runs.ranked(log)["lr"]) == [0.4, 0.6, 0.3, 0.1]
    assert list(runs.ranked(log, usable_only=False)["lr"]) == [0.4, 0.6, 0.3, 0.1, 0.2, 0.5]
    # The same order as sorting by the solver's key itself: one rule.
    keys = [solver.rank_key(r.best_val_acc, r.best_val_loss, r.diverged) for r in log.itertuples()]
    assert list(runs.ranked(log, usable_only=False).index) == sorted(range(len(log)), key=keys.__getitem__)
    assert runs.ranked(log.iloc[[1, 4]]).empty


def test_find_row_and_read_log(tmp_path):
    log = _log([(0.1, 0.8, 0.5, False), (0.01, 0.9, 0.3, False)])
    assert runs.find_row(log, {"layers": (4, 3), "lr": 0.01, "L2_lambda": 0})["best_val_acc"] == 0.9
    with pytest.raises(KeyError, match=r"4-3_lr0\.5_L2_lambda0 is not in the log"):
        runs.find_row(log, {"layers": (4, 3), "lr": 0.5, "L2_lambda": 0})
    path = tmp_path / "log.csv"
    runs.start_log(path, grid.LOG_COLUMNS)
    runs.append_rows(path, log.to_dict("records"), grid.LOG_COLUMNS)
    pd.testing.assert_frame_equal(runs.read_log(path, grid.LOG_COLUMNS, "a test log"), log)
    with pytest.raises(ValueError, match=r"is not a test log: found columns .*expected .*Advice\."):
        runs.read_log(path, ["rung", *grid.LOG_COLUMNS], "a test log", " Advice.")


def _blas_threads_and_arguments(item, *args, **kwargs):
    return item, args, kwargs, max(pool["num_threads"] for pool in threadpool_info()), os.getpid()


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_dispatch_calls_each_item_with_one_blas_thread(n_jobs):
    results = list(runs.dispatch(_blas_threads_and_arguments, [3, 1, 2], "a", n_jobs=n_jobs, ordered=True, k=4))
    assert [(item, args, kwargs) for item, args, kwargs, _, _ in results] == [
        (3, ("a",), {"k": 4}), (1, ("a",), {"k": 4}), (2, ("a",), {"k": 4})]
    assert all(threads == 1 for *_, threads, _ in results)
    here = {pid == os.getpid() for *_, pid in results}
    assert here == ({True} if n_jobs == 1 else {False})


def test_dispatch_in_process_is_lazy_and_unordered_in_workers():
    calls = []

    def record(item):
        calls.append(item)
        return item

    results = runs.dispatch(record, [1, 2, 3])  # n_jobs=1: here, one call at a time as the results are read
    assert calls == []
    assert next(results) == 1 and calls == [1]
    unordered = runs.dispatch(_blas_threads_and_arguments, range(6), n_jobs=2)
    assert sorted(item for item, *_ in unordered) == list(range(6))
    assert list(runs.dispatch(_blas_threads_and_arguments, [], n_jobs=2)) == []


def test_blas_threads_is_one_here_and_left_to_a_cluster():
    assert {runs.blas_threads(n) for n in (1, 2, -1)} == {1}
    with joblib.parallel_config(backend="threading"):
        assert runs.blas_threads(2) == 1


def test_a_recipe_compares_as_plain_values_with_its_blas_kernels_in_any_order(data, tmp_path):
    kernels = [{"internal_api": "openblas", "version": v, "architecture": "Haswell"} for v in ("0.3.31", "0.3.30")]
    logged = dict(recipes.describe_recipe({"max_epoch": 2, "seed": 0}, *data), blas=kernels)
    described = dict(recipes.describe_recipe({"max_epoch": np.int64(2), "seed": np.int32(0)}, *data),
                     blas=kernels[::-1])
    assert all(recipes.same_recipe(logged, described, part) for part in ("recipe", "data", "blas"))
    assert recipes.describe_recipe({}, *data)["blas"] == sorted(recipes.describe_recipe({}, *data)["blas"],
                                                              key=lambda kernel: json.dumps(kernel, sort_keys=True))
    assert not recipes.same_recipe(logged, dict(described, recipe={"max_epoch": 3, "seed": 0}), "recipe")
    log_path = tmp_path / "grid.csv"
    recipes.write_recipe(log_path, logged)
    recipes.check_recipe(log_path, described, has_runs=True)  # the same recipe: accepted, and its record kept
    assert json.loads(recipes.recipe_path(log_path).read_text())["blas"] == kernels


def test_a_damaged_recipe_record_names_its_file(data, tmp_path):
    log_path = tmp_path / "grid.csv"
    recipes.write_recipe(log_path, recipes.describe_recipe({}, *data))
    path = recipes.recipe_path(log_path)
    path.write_text(path.read_text()[:20])
    with pytest.raises(ValueError, match=r"grid\.recipe\.json is not a readable recipe record"):
        recipes.check_recipe(log_path, recipes.describe_recipe({}, *data), has_runs=True)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a recipe record"):
        recipes.check_recipe(log_path, recipes.describe_recipe({}, *data), has_runs=True)


@pytest.mark.parametrize("spelled, expected", [("True", True), ("false", False), ("0", False), ("yes", True)])
def test_booleans_are_read_however_spelled(tmp_path, spelled, expected):
    path = tmp_path / "log.csv"
    path.write_text(f"seed,diverged\n1,{spelled}\n")
    assert runs.read_log(path, ["seed", "diverged"], "a log")["diverged"].tolist() == [expected]
