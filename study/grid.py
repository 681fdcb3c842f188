"""Hyperparameter grid search for the NumPy MLP, with a resumable CSV log.

Each finished run appends one row to the log and writes its training history to
``history_dir/<run_name>.csv``. Calling :func:`grid_search` again skips the runs already
logged, so an interrupted search continues where it stopped; ``<log>.recipe.json`` beside the
log records the recipe, the data's fingerprint and the BLAS kernels, and a resume with another
recipe or other data is refused. Model selection uses validation numbers only; the test set
never enters this module.
"""

import sys
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from fileio import atomic_write
from study import config, recipes, runs

LOG_COLUMNS = [*runs.SETTINGS, "best_val_acc", "best_val_loss", "train_time_s", "best_iteration", "diverged"]


def train_run(settings, X_train, y_train, X_val, y_val, **model_kwargs):
    """Train one model of the grid; return ``(log row dict, history DataFrame)``.

    Module-level so that :func:`runs.dispatch` can send it to joblib's workers.
    """
    model = runs.fit(dict(settings, **model_kwargs), X_train, y_train, X_val, y_val)
    return runs.log_row(settings, model), model.history


def history_path(history_dir, settings):
    """Where the grid search writes the training history of the run of ``settings`` (a settings dict or a log row):
    ``history_dir/<run_name>.csv``."""
    return Path(history_dir) / f"{runs.run_name(settings)}.csv"


def read_history(history_dir, settings):
    """The training history the grid search wrote for the run of ``settings``, as a DataFrame; FileNotFoundError
    saying how to get it back if it is missing, ValueError naming it if it is empty or unreadable
    (``runs.read_history``)."""
    path = history_path(history_dir, settings)
    again = ("run the grid search again with this history_dir (it trains the runs whose history is missing and "
             "writes it) or restore the file")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {again}")
    return runs.read_history(path, f"delete it and {again}")


def read_log(log_path):
    """Read a grid-search log, checking that its columns are :data:`LOG_COLUMNS`; a run logged twice counts once
    (its last row), with a warning."""
    return runs.read_log(log_path, LOG_COLUMNS, "a log of this grid search (an older or different one wrote it)",
                         " Pass rerun=True to start a new log (the old one is kept as a .bak file) or delete the "
                         "file; rows of different formats are never mixed.", key=runs.settings_key)


def best_settings(log):
    """Settings of the best run (``runs.ranked``): ``dict(layers=tuple, lr=, L2_lambda=)``."""
    ranked = runs.ranked(log)
    if ranked.empty:
        raise ValueError("the log holds no finished, non-diverged run")
    return config.settings_from_row(ranked.iloc[0])


def top_k(log, k=5):
    """The ``k`` best runs that did not diverge, best first (``runs.ranked``)."""
    return runs.ranked(log).head(k).reset_index(drop=True)


def logged_runs(log_path):
    """How many finished runs a grid-search log holds (0 if there is none), i.e. how many a resume skips.

    Counts complete lines after the header, so a row torn by a crash, which the grid search drops and trains
    again, is not counted.
    """
    log_path = Path(log_path)
    if not log_path.exists():
        return 0
    return max(0, log_path.read_bytes().count(b"\n") - 1)


def rows_without_history(log, history_dir):
    """The settings keys of the rows of ``log`` whose history file is missing from ``history_dir``.

    ValueError, naming the folder, when the log holds runs and the folder holds none of their histories (it is
    missing, or it is not this log's): training every run again would be the answer to a mistyped path.
    """
    missing = [runs.settings_key(row) for row in log.to_dict("records") if not history_path(history_dir, row).exists()]
    if len(log) and len(missing) == len(log):
        raise ValueError(f"the history folder {history_dir} holds none of the histories of the {len(log)} runs "
                         "logged: pass the folder the search wrote them to, or rerun=True to train them all again "
                         "(the old log is kept as .bak)")
    return set(missing)


def same_numbers(logged, row):
    """Whether a run trained again (``row``) repeats its ``logged`` row: the same numbers but its training time."""
    if logged is None:
        return False
    return all(logged[column] == row[column] or (pd.isna(logged[column]) and pd.isna(row[column]))
               for column in LOG_COLUMNS if column != "train_time_s")


def _postfix(bar, log):
    ranked = runs.ranked(log)
    if not ranked.empty:
        best = ranked.iloc[0]
        bar.set_postfix(best_val_acc=f"{best['best_val_acc']:.4f}", best=runs.run_name(config.settings_from_row(best)))


def grid_search(
    grid,
    X_train,
    y_train,
    X_val,
    y_val,
    log_path,
    history_dir,
    rerun=False,
    n_jobs=1,
    progress=True,
    desc="grid search",
    **model_kwargs,
):
    """Train one MLP per settings dict of ``grid`` and return the whole log as a DataFrame.

    ``desc`` labels the progress bar. Runs already in ``log_path`` are skipped; ``rerun=True`` moves
    the old log and history folder to ``.bak`` and trains everything again. ``model_kwargs`` go to :class:`MLP`
    (activation, max_epoch, batch_size, seed, ...). All runs share the same seed, so a
    run's numbers depend only on its settings, not on the order or on ``n_jobs``.
    ``n_jobs > 1`` trains in joblib workers (loky unless ``joblib.parallel_config`` says
    otherwise); only this process writes the log and the history files. Under
    ``joblib.parallel_config(backend="dask")`` the cluster's worker threads decide how many
    runs train at once: n_jobs only has to differ from 1, which always trains in this process
    (``runs.dispatch``).
    """
    log_path, history_dir = Path(log_path), Path(history_dir)
    also = [recipes.recipe_path(log_path), history_dir]
    with runs.prepared_log(log_path, LOG_COLUMNS, fresh=rerun, also=also):  # one search per log at a time
        log = read_log(log_path)
        recipes.check_recipe(log_path, recipes.describe_recipe(model_kwargs, X_train, y_train, X_val, y_val),
                          has_runs=len(log) > 0, restart="rerun=True")
        without_history = rows_without_history(log, history_dir)
        if without_history:
            print(f"{len(without_history)} logged runs have no history in {history_dir}: they train again to write "
                  "it, and their rows stay as logged")
        history_dir.mkdir(parents=True, exist_ok=True)

        logged = {runs.settings_key(row): row for row in log.to_dict("records")}
        todo = runs.unique_settings(grid)
        pending = [s for k, s in todo.items() if k not in logged or k in without_history]
        results = runs.dispatch(train_run, pending, X_train, y_train, X_val, y_val, n_jobs=n_jobs, **model_kwargs)

        with tqdm(
            total=len(todo),
            initial=len(todo) - len(pending),
            desc=desc,
            unit="run",
            disable=not progress,
            # Plain text on stdout: a saved notebook then shows the finished bar wherever it is read, GitHub included.
            file=sys.stdout,
        ) as bar:
            _postfix(bar, log)
            rows = log.to_dict("records")
            for row, history in results:
                atomic_write(history_path(history_dir, row), partial(history.to_csv, index=False))
                if not same_numbers(logged.get(runs.settings_key(row)), row):
                    runs.append_rows(log_path, [row], LOG_COLUMNS)  # a changed rerun: its new row counts
                    rows.append(row)
                bar.update()
                _postfix(bar, pd.DataFrame(rows, columns=LOG_COLUMNS))
        return read_log(log_path)
