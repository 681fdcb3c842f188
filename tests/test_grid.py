from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study import config, grid, runs

MODEL_KWARGS = {"max_epoch": 2, "batch_size": 50, "print_iter": 2, "seed": 0}
KEY = ["layers", "lr", "L2_lambda"]


@pytest.fixture
def settings_grid():
    return config.make_grid([0.01, 0.1], [(20, 8, 3)], [0.0, 1e-3])


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "logs" / "grid.csv", tmp_path / "histories"


@pytest.fixture
def counter(monkeypatch):
    """Counts the runs actually trained, through the real worker."""
    calls = []
    real = grid.train_run

    def counting(settings, *args, **kwargs):
        calls.append(settings)
        return real(settings, *args, **kwargs)

    monkeypatch.setattr(grid, "train_run", counting)
    return calls


def search(settings_grid, data, paths, **kwargs):
    return grid.grid_search(settings_grid, *data, *paths, progress=False, **MODEL_KWARGS, **kwargs)


def test_run_name_format_and_unique():
    assert runs.run_name({"layers": (784, 256, 128, 10), "lr": 0.01, "L2_lambda": 0.001}) == (
        "784-256-128-10_lr0.01_L2_lambda0.001"
    )
    archs = [(784, 10), (784, 100, 10), (784, 10, 10)]
    settings_grid = config.make_grid([1e-3, 0.003, 0.01, 0.1], archs, [0, 1e-5, 1e-4])
    names = [runs.run_name(s) for s in settings_grid]
    assert len(set(names)) == len(settings_grid)
    assert all("/" not in n and " " not in n for n in names)


def test_log_has_one_row_per_setting_and_histories(data, settings_grid, paths, counter):
    log = search(settings_grid, data, paths)
    log_path, history_dir = paths
    assert list(log.columns) == grid.LOG_COLUMNS
    assert len(log) == len(settings_grid) == len(counter)
    assert set(log["layers"]) == {"20-8-3"}
    pairs = sorted(zip(log["lr"], log["L2_lambda"], strict=True))
    assert pairs == [(0.01, 0.0), (0.01, 1e-3), (0.1, 0.0), (0.1, 1e-3)]
    assert log["best_val_acc"].between(0, 1).all()
    assert (log["best_iteration"] > 0).all()
    assert not log["diverged"].any()
    pd.testing.assert_frame_equal(grid.read_log(log_path), log)
    for s in settings_grid:
        history = grid.read_history(history_dir, s)
        assert grid.history_path(history_dir, s) == history_dir / f"{runs.run_name(s)}.csv"
        assert {"iteration", "train_loss", "val_acc", "diverged"} <= set(history.columns)
        row = log[(log["lr"] == s["lr"]) & (log["L2_lambda"] == s["L2_lambda"])].iloc[0]
        assert history["val_acc"].max() == pytest.approx(row["best_val_acc"])
    assert not list(history_dir.glob("*.tmp"))


def test_rows_are_on_disk_when_a_later_run_fails(data, settings_grid, paths, monkeypatch):
    real = grid.train_run

    def failing_third(settings, *args, **kwargs):
        if settings == settings_grid[2]:
            raise RuntimeError("boom")
        return real(settings, *args, **kwargs)

    monkeypatch.setattr(grid, "train_run", failing_third)
    with pytest.raises(RuntimeError, match="boom"):
        search(settings_grid, data, paths)
    log = grid.read_log(paths[0])
    assert len(log) == 2
    assert list(zip(log["lr"], log["L2_lambda"], strict=True)) == [(0.01, 0.0), (0.01, 1e-3)]
    assert sorted(p.name for p in paths[1].iterdir()) == sorted(f"{runs.run_name(s)}.csv" for s in settings_grid[:2])


def test_resume_trains_only_missing_runs(data, settings_grid, paths, counter):
    search(settings_grid[:3], data, paths)
    assert len(counter) == 3
    log = search(settings_grid, data, paths)
    assert counter[3:] == [settings_grid[3]]
    assert len(log) == 4
    assert not log.duplicated(KEY).any()
    search(settings_grid, data, paths)
    assert len(counter) == 4


def test_resume_matches_floats_written_differently(data, settings_grid, paths, counter):
    """A learning rate of 0.01 written as 0.010000000000000002 (float noise) is the same run."""
    search(settings_grid[:1], data, paths)
    log_path = paths[0]
    log_path.write_text(log_path.read_text().replace(",0.01,", ",0.010000000000000002,"))
    search(settings_grid[:1], data, paths)
    assert len(counter) == 1


def test_torn_last_row_is_dropped_and_rerun(data, settings_grid, paths, counter):
    search(settings_grid[:2], data, paths)
    log_path = paths[0]
    with open(log_path, "a") as f:
        f.write("20-8-3,0.1,0.0,0.5")  # a crash in the middle of appending a row
    log = search(settings_grid[:3], data, paths)
    assert len(counter) == 3
    assert len(log) == 3
    assert not log.isna().any().any()


def test_rerun_trains_everything_and_keeps_backup(data, settings_grid, paths, counter):
    first = search(settings_grid[:2], data, paths)
    log = search(settings_grid[:2], data, paths, rerun=True)
    assert len(counter) == 4
    assert len(log) == 2
    log_path, history_dir = paths
    assert log_path.with_name("grid.csv.bak").exists()
    assert len(list(history_dir.iterdir())) == 2
    # Same seed, same settings: identical numbers.
    cols = ["best_val_acc", "best_val_loss", "best_iteration"]
    pd.testing.assert_frame_equal(first[cols], log[cols])


def test_log_with_other_columns_raises(data, settings_grid, paths, counter):
    log_path = paths[0]
    log_path.parent.mkdir(parents=True)
    # A log of an older grid search, in the names the log used before it took the model's.
    pd.DataFrame({"layers": ["20-8-3"], "lr": [0.1], "best_val_acc": [0.5]}).to_csv(log_path, index=False)
    with pytest.raises(ValueError, match="rerun=True") as error:
        search(settings_grid, data, paths)
    assert "best_val_acc" in str(error.value) and "best_val_acc" in str(error.value)
    with pytest.raises(ValueError, match="rerun=True"):
        grid.read_log(log_path)
    assert counter == []
    assert len(search(settings_grid[:1], data, paths, rerun=True)) == 1


def test_parallel_gives_same_numbers(data, settings_grid, tmp_path):
    cols = [*KEY, "best_val_acc", "best_val_loss", "best_iteration", "diverged"]
    serial = search(settings_grid, data, (tmp_path / "a.csv", tmp_path / "ha"), n_jobs=1)
    parallel = search(settings_grid, data, (tmp_path / "b.csv", tmp_path / "hb"), n_jobs=2)
    serial = serial[cols].sort_values(KEY).reset_index(drop=True)
    parallel = parallel[cols].sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(serial, parallel)
    assert len(list((tmp_path / "hb").glob("*.csv"))) == len(settings_grid)


def test_diverged_run_is_logged_and_not_selected(data, paths):
    settings_grid = config.make_grid([0.1, 1e5], [(20, 8, 3)], [0.0])
    log = search(settings_grid, data, paths)
    assert list(log["diverged"]) == [False, True]
    history = pd.read_csv(paths[1] / f"{runs.run_name(settings_grid[1])}.csv")
    assert history["diverged"].iloc[-1] and not history["diverged"].iloc[:-1].any()
    assert grid.best_settings(log) == settings_grid[0]
    assert list(grid.top_k(log)["lr"]) == [0.1]


def test_progress_bar_goes_to_stdout(data, settings_grid, paths, capsys):
    grid.grid_search(settings_grid[:1], *data, *paths, progress=True, **MODEL_KWARGS)
    out, err = capsys.readouterr()
    assert "1/1" in out
    assert "best_val_acc" in out
    assert err == ""


def _log(rows):
    return pd.DataFrame(
        [
            {"layers": ls, "lr": lr, "L2_lambda": l2, "best_val_acc": acc, "best_val_loss": loss,
             "train_time_s": 1.0, "best_iteration": 10, "diverged": div}
            for ls, lr, l2, acc, loss, div in rows
        ],
        columns=grid.LOG_COLUMNS,
    )


def test_best_settings_skips_diverged_and_breaks_ties_on_loss():
    log = _log([
        ("784-10", 0.1, 0.0, 0.80, 0.5, False),
        ("784-64-10", 1.0, 0.0, 0.95, 0.2, True),  # best accuracy, but diverged
        ("784-64-10", 0.1, 1e-4, 0.88, 0.40, False),
        ("784-64-10", 0.01, 0.0, 0.88, 0.35, False),  # same accuracy, lower loss
        ("784-64-10", 0.5, 0.0, np.nan, np.nan, True),
    ])
    assert grid.best_settings(log) == {"layers": (784, 64, 10), "lr": 0.01, "L2_lambda": 0.0}
    top = grid.top_k(log, k=2)
    assert list(top["best_val_acc"]) == [0.88, 0.88]
    assert list(top["lr"]) == [0.01, 0.1]
    assert len(grid.top_k(log)) == 3
    assert grid.top_k(log)["best_val_acc"].is_monotonic_decreasing


def test_best_settings_without_usable_run_raises():
    with pytest.raises(ValueError, match="non-diverged"):
        grid.best_settings(_log([("784-10", 5.0, 0.0, np.nan, np.nan, True)]))


def test_logged_runs(tmp_path):
    path = tmp_path / "grid.csv"
    assert grid.logged_runs(path) == 0
    pd.DataFrame([{"layers": "784-10", "lr": 0.1, "L2_lambda": 0.0, "best_val_acc": 0.8,
                   "best_val_loss": 0.5, "train_time_s": 1.0, "best_iteration": 3, "diverged": False}] * 3,
                 columns=grid.LOG_COLUMNS).to_csv(path, index=False)
    assert grid.logged_runs(path) == 3
    with open(path, "a") as f:
        f.write("784-10,0.1,0.0,0.5")  # a row torn by a crash
    assert grid.logged_runs(path) == 3
    path.write_text("")
    assert grid.logged_runs(path) == 0


def test_the_committed_log_names_its_histories():
    """The repository's grid log and its histories speak the same vocabulary: one history per row, found by name."""
    log_dir = Path(__file__).resolve().parent.parent / "log"
    log = grid.read_log(log_dir / "grid_search.csv")
    names = [f"{runs.run_name(config.settings_from_row(row))}.csv" for _, row in log.iterrows()]
    assert sorted(names) == sorted(p.name for p in (log_dir / "histories").glob("*.csv"))
    for name, best_val_acc in zip(names, log["best_val_acc"], strict=True):
        assert pd.read_csv(log_dir / "histories" / name)["val_acc"].max() == best_val_acc


def test_a_resume_with_another_recipe_or_other_data_is_refused_and_the_log_kept(data, settings_grid, paths, counter):
    search(settings_grid[:2], data, paths)
    before = paths[0].read_bytes()
    with pytest.raises(ValueError, match=r"another recipe .*'max_epoch': 2.*'max_epoch': 3.*rerun=True"):
        grid.grid_search(settings_grid, *data, *paths, progress=False, **dict(MODEL_KWARGS, max_epoch=3))
    X_train, y_train, X_val, y_val = data
    with pytest.raises(ValueError, match="other data"):
        search(settings_grid, (X_train[1:], y_train[1:], X_val, y_val), paths)
    assert paths[0].read_bytes() == before and len(counter) == 2
    assert len(search(settings_grid, data, paths)) == 4  # the same recipe and data resume


def test_a_row_whose_history_is_missing_trains_again_to_write_it_and_its_row_stays(data, settings_grid, paths,
                                                                                  counter, capsys):
    search(settings_grid, data, paths)
    text = paths[0].read_bytes()
    history = grid.history_path(paths[1], settings_grid[1])
    expected = history.read_bytes()
    history.unlink()
    with pytest.raises(FileNotFoundError, match="is missing: run the grid search again"):
        grid.read_history(paths[1], settings_grid[1])
    search(settings_grid, data, paths)
    assert counter[4:] == [settings_grid[1]]
    assert "1 logged runs have no history" in capsys.readouterr().out
    assert history.read_bytes() == expected  # the same run, bit for bit
    assert paths[0].read_bytes() == text  # its row repeated the logged one: the log is as it was


def test_no_resume_loses_a_logged_row(data, settings_grid, paths, counter):
    """The history folder missing or mistyped, a boolean spelled otherwise, a row logged twice, a blank line: the
    log and its backups stay as they were, and what can be read is read."""
    log_path, history_dir = paths
    search(settings_grid, data, paths)
    text = log_path.read_bytes()
    for wrong in (history_dir.with_name("histories_typo"), history_dir):
        if wrong == history_dir:
            history_dir.rename(history_dir.with_name("moved"))
        with pytest.raises(ValueError, match=f"history folder {wrong} holds none of the histories of the 4 runs"):
            grid.grid_search(settings_grid, *data, log_path, wrong, progress=False, **MODEL_KWARGS)
        assert log_path.read_bytes() == text
    history_dir.with_name("moved").rename(history_dir)

    lines = text.decode().splitlines(keepends=True)
    edited = lines[0] + lines[1].replace(",False", ",false") + "\n" + lines[2] + lines[2] + "".join(lines[3:])
    log_path.write_text(edited)
    with pytest.warns(UserWarning, match="logs 1 runs more than once"):
        log = search(settings_grid, data, paths)
    assert len(counter) == 4 and len(log) == 4 and not log["diverged"].any()
    assert log_path.read_text() == edited

    log_path.write_text(edited.replace(",false", ",nope"))
    with pytest.raises(ValueError, match=r"column 'diverged' must hold true or false, found \['nope'\]"):
        search(settings_grid, data, paths)
    assert len(counter) == 4


def test_a_second_search_on_the_same_log_fails_at_once_and_the_lock_goes_with_the_first(data, settings_grid, paths,
                                                                                       counter):
    with runs.exclusive(paths[0]), pytest.raises(runs.LogInUse, match="another search is writing"):
        search(settings_grid, data, paths)
    assert counter == []
    with pytest.raises(ValueError), runs.exclusive(paths[0]):
        raise ValueError("a search that fails")
    assert len(search(settings_grid, data, paths)) == 4  # the lock was released both times


def test_reruns_never_replace_an_older_backup(data, settings_grid, paths):
    search(settings_grid[:1], data, paths)
    first = paths[0].read_bytes()
    search(settings_grid[:2], data, paths, rerun=True)
    second = paths[0].read_bytes()
    search(settings_grid[:3], data, paths, rerun=True)
    assert paths[0].with_name("grid.csv.bak").read_bytes() == first
    assert paths[0].with_name("grid.csv.bak.1").read_bytes() == second
    assert paths[1].with_name("histories.bak.1").is_dir()
