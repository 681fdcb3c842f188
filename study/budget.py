"""How many epochs section 7's wide network trains, chosen on the validation set.

The wide network's cosine schedule spans the whole run, so a shorter run is another recipe, not the first part of
a longer one: each budget trains from the start. :func:`choose_budget` applies the one-standard-error rule (Breiman
et al., 1984; Hastie, Tibshirani and Friedman, *The Elements of Statistical Learning*, 7.10): the fewest epochs whose
best validation accuracy is within one standard error of the best budget's, that error being the binomial one of
an accuracy measured on the validation images. The test set plays no part. ``config.WIDE_RECIPE["max_epoch"]`` is
the choice on the committed log, which a test checks.

    python -m study.budget [--budgets 30 40 45 50 60] [--jobs 2] [--fresh]

trains every budget not yet in ``log/wide_budget.csv`` (same settings, same data), appending a row per finished run,
so an interrupted search goes on where it stopped; ``--fresh`` keeps the old log as ``.bak`` and starts again.
"""

import argparse
import math
import warnings

import pandas as pd

import mnist_reader
from study import config, runs

LOG_COLUMNS = ["max_epoch", "key", "best_val_acc", "best_val_loss", "best_iteration", "train_time_s", "diverged",
               "val_images"]
BUDGETS = (30, 40, 45, 50, 60)
LOG_PATH = config.REPO_DIR / "log" / "wide_budget.csv"  # the committed search, which set config.WIDE_RECIPE


def budget_runs(settings, budgets, X_train, y_train, X_val, y_val, log_path, n_jobs=1, fresh=False, progress=True):
    """Train ``settings`` (``MLP`` keyword arguments) once for each number of epochs in ``budgets``, ``n_jobs`` at a
    time, and return their rows of the log at ``log_path``, in the order of ``budgets``.

    Runs already in the log with the same settings and data (its ``key``) are read from it, unless ``fresh``.
    """
    budgets = [int(budget) for budget in budgets]
    if not budgets or len(set(budgets)) != len(budgets) or min(budgets) < 1:
        raise ValueError(f"budgets must be distinct numbers of epochs of at least 1, got {budgets}")
    rows = runs.keyed_runs(
        [dict(settings, max_epoch=budget) for budget in budgets], (X_train, y_train, X_val, y_val), log_path,
        LOG_COLUMNS, "a log of epoch budgets", lambda model: {**runs.outcome(model), "val_images": len(y_val)},
        lambda row: {"epochs": row["max_epoch"], "val_acc": f"{row['best_val_acc']:.4f}"},
        n_jobs=n_jobs, fresh=fresh, progress=progress, desc="budgets")
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


def read_budget_log(log_path=LOG_PATH, settings=None, data=None):
    """The rows of a log of :func:`budget_runs` (the committed one by default), with their columns checked.

    Given the ``settings`` and ``data`` (``X_train, y_train, X_val, y_val``) of the budgets wanted, only their rows
    are kept (by their ``key``), and a warning counts the others. Without them, a budget logged twice under two keys
    is an error: the log mixes two recipes or two data sets, and no rule may choose from the mixture."""
    log = runs.read_log(log_path, LOG_COLUMNS, "a log of epoch budgets",
                        " Pass fresh=True to start a new one (the old one is kept as .bak).",
                        key=lambda row: (row["max_epoch"], row["key"]))
    if settings is not None:
        keys = [runs.run_key(dict(settings, max_epoch=int(budget)), data) for budget in log["max_epoch"]]
        mine = log["key"].to_numpy() == keys
        if not mine.all():
            warnings.warn(f"{log_path}: {int((~mine).sum())} rows of other settings or other data left out",
                          stacklevel=2)
        log = log[mine].reset_index(drop=True)
    mixed = sorted(log.loc[log["max_epoch"].duplicated(), "max_epoch"].unique().tolist())
    if mixed:
        raise ValueError(f"{log_path} logs the budgets {mixed} under two keys: it mixes runs of two recipes or data "
                         "sets. Read it with the settings and data wanted (read_budget_log(path, settings, data)), "
                         "or start a new log (--fresh)")
    return log


def choose_budget(table):
    """The fewest epochs of ``table`` (rows of :func:`budget_runs`) whose ``best_val_acc`` is at least the best
    row's minus one standard error, ``sqrt(p (1 - p) / n)`` for its accuracy ``p`` on ``n`` validation images.
    Returns ``(max_epoch, threshold)``; diverged runs are never chosen."""
    if table.empty:
        raise ValueError("the log holds no budget: train them first (python -m study.budget)")
    usable = table[~table["diverged"].astype(bool)]
    if usable.empty:
        raise ValueError("every budget diverged: nothing to choose from")
    best = usable.loc[usable["best_val_acc"].idxmax()]
    p, n = float(best["best_val_acc"]), int(best["val_images"])
    threshold = p - math.sqrt(p * (1 - p) / n)
    return int(usable.loc[usable["best_val_acc"] >= threshold, "max_epoch"].min()), threshold


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, one BLAS thread each")
    parser.add_argument("--fresh", action="store_true", help="train every budget again (the old log is kept)")
    args = parser.parse_args(argv)
    cfg = config.study_config(quick=False)
    X_train, y_train, X_val, y_val, _, _ = mnist_reader.load_fashion_mnist(seed=cfg.split_seed,
                                                                           val_fraction=cfg.val_fraction)
    table = budget_runs(cfg.wide_settings, args.budgets, X_train, y_train, X_val, y_val,
                        LOG_PATH, n_jobs=args.jobs, fresh=args.fresh)
    chosen, threshold = choose_budget(table)
    print(table.drop(columns="key").to_string(index=False))
    print(f"fewest epochs within one standard error of the best (validation accuracy >= {threshold:.4f}): {chosen}")


if __name__ == "__main__":
    main()
