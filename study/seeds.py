"""Section 8 of the study: the grid's chosen settings trained again with other seeds.

One run's accuracy mixes what its settings are worth with the luck of its seed, which draws the initial weights and
the order of the mini-batches. :func:`seed_runs` trains the same settings once per seed (the split stays the
study's), each run with one BLAS thread as the grid's runs had (``runs.dispatch``), and measures each on the test
set; ``stats.spread`` then gives the mean and standard deviation, and ``stats.position`` where a single run falls.

Every finished run appends a row to a CSV log, so that a cell run again reads the runs already there instead of
training them again; a row belongs to one set of settings and one data set (its ``key``), and rows of other ones
are ignored. ``fresh=True`` moves the old log to ``.bak`` and trains every run again.
"""

from pathlib import Path

import pandas as pd

from study import runs, stats

LOG_COLUMNS = ["seed", "key", "best_val_acc", "best_val_loss", "best_iteration", "train_time_s", "diverged",
               "test_correct", "test_images"]


def read_seed_log(log_path):
    """The log of :func:`seed_runs` as a DataFrame (empty when there is none); ValueError if it has other columns."""
    if not Path(log_path).exists():
        return pd.DataFrame(columns=LOG_COLUMNS)
    return runs.read_log(log_path, LOG_COLUMNS, "a log of seed runs",
                         " Pass fresh=True to start a new one (the old one is kept as .bak).")


def seed_runs(settings_list, X_train, y_train, X_val, y_val, X_test, y_test, log_path, n_jobs=1, fresh=False,
              progress=True):
    """Train one run of each settings dict of ``settings_list`` (``MLP`` keyword arguments, which differ by their
    ``seed``), ``n_jobs`` at a time, and measure each on the test set; return :func:`seed_table` of them, in the
    order of ``settings_list``.

    The runs already in the log at ``log_path`` (same settings, same data) are taken from it, unless ``fresh``.
    Selection plays no part here: the test set only measures.
    """
    seeds = [int(settings["seed"]) for settings in settings_list]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"each run needs its own seed, got {seeds}")

    def row_of(model):
        test_acc, _ = model.evaluate(X_test, y_test)
        outcome = runs.outcome(model)
        return {**{column: outcome[column] for column in LOG_COLUMNS[2:7]},
                "test_correct": round(test_acc * len(y_test)), "test_images": len(y_test)}

    def postfix(row):
        return {"seed": row["seed"], "val_acc": f"{row['best_val_acc']:.4f}",
                "test_acc": f"{row['test_correct'] / row['test_images']:.4f}"}

    rows = runs.keyed_runs(settings_list, (X_train, y_train, X_val, y_val, X_test, y_test), log_path, LOG_COLUMNS,
                           "a log of seed runs", row_of, postfix, n_jobs=n_jobs, fresh=fresh, progress=progress,
                           desc="seeds")
    return seed_table(rows)


def seed_table(rows):
    """The runs as the notebook shows them: seed, validation numbers, and test accuracy with its exact interval."""
    table = pd.DataFrame(rows, columns=LOG_COLUMNS).drop(columns="key")
    table["test_acc"] = table["test_correct"] / table["test_images"]
    intervals = [stats.accuracy_ci(k, n) for k, n in zip(table["test_correct"], table["test_images"], strict=True)]
    table["test_ci_low"] = [low for low, _ in intervals]
    table["test_ci_high"] = [high for _, high in intervals]
    return table[["seed", "best_val_acc", "best_val_loss", "best_iteration", "diverged", "test_acc", "test_ci_low",
                  "test_ci_high", "train_time_s"]].reset_index(drop=True)


def summary(table, single_run, original=None):
    """The spread of the seeds' runs (``stats.spread`` of validation and test accuracy, diverged runs left out) and
    where the single run of the grid's seed (``single_run``: ``{"seed", "val_acc", "test_acc"}``) and, if given, the
    ``original`` study's test accuracy fall in it."""
    usable = table[~table["diverged"]]
    result = {"seeds": [int(seed) for seed in table["seed"]], "diverged": int(table["diverged"].sum()),
              "val": stats.spread(usable["best_val_acc"]), "test": stats.spread(usable["test_acc"]),
              "single_run": {"seed": int(single_run["seed"]),
                             "val": stats.position(single_run["val_acc"], usable["best_val_acc"]),
                             "test": stats.position(single_run["test_acc"], usable["test_acc"])}}
    if original is not None:
        result["original_test"] = stats.position(original, usable["test_acc"])
    return result


def describe_summary(found):
    """:func:`summary` in a few lines of text, as the notebook prints it."""
    val, test, single = found["val"], found["test"], found["single_run"]
    lines = [f"{val['n']} seeds: validation accuracy {val['mean']:.4f} +- {val['std']:.4f} (sd; {val['min']:.4f} to "
             f"{val['max']:.4f}), test accuracy {test['mean']:.4f} +- {test['std']:.4f} (sd; {test['min']:.4f} to "
             f"{test['max']:.4f})"]
    for name, where in ((f"the grid's run (seed {single['seed']}) on validation", single["val"]),
                        (f"the grid's run (seed {single['seed']}) on test", single["test"]),
                        ("the original study on test", found.get("original_test"))):
        if where is not None:
            lines.append(f"{name}: {where['value']:.4f}, {where['z']:+.1f} sd from the seeds' mean, above "
                         f"{where['below']} and below {where['above']} of the {test['n']} runs")
    return "\n".join(lines)
