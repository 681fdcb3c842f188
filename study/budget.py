"""How many epochs section 7's wide network trains, chosen on the validation set.

The wide network's cosine schedule spans the whole run, so a shorter run is another recipe, not the first part of
a longer one: each budget trains from the start, once for each of a few seeds. :func:`budget_rule` applies the
one-standard-error rule (Breiman et al., 1984; Hastie, Tibshirani and Friedman, *The Elements of Statistical
Learning*, 7.10) to the mean of the seeds of each budget: the fewest epochs whose mean best validation accuracy is
within one standard error of the best budget's, that error combining the binomial one of an accuracy measured on the
validation images with the spread between seeds (see :func:`budget_rule`). It also says by how many validation
images the choice clears the threshold. The test set plays no part. ``config.WIDE_RECIPE["max_epoch"]`` is the
choice on the committed log, which a test checks.

    python -m study.budget [--budgets 30 40 45 50 60] [--seeds 0 1] [--jobs 2] [--fresh]

trains every budget and seed not yet in ``log/wide_budget.csv`` (same settings, same data), appending a row per
finished run, so an interrupted search goes on where it stopped; ``--fresh`` keeps the old log as ``.bak`` and starts
again.
"""

import argparse
import io
import math
import warnings
from pathlib import Path

import pandas as pd

import mnist_reader
from fileio import atomic_write
from study import config, runs

LOG_COLUMNS = ["max_epoch", "seed", "key", "best_val_acc", "best_val_loss", "best_iteration", "train_time_s",
               "diverged", "val_images"]
OLD_COLUMNS = [column for column in LOG_COLUMNS if column != "seed"]  # a log of one seed, before the seed column
BUDGETS = (30, 40, 45, 50, 60)
SEEDS = (0, 1)
LOG_PATH = config.REPO_DIR / "log" / "wide_budget.csv"  # the committed search, which set config.WIDE_RECIPE
WHAT = "a log of epoch budgets"


def budget_settings(settings, budget, seed):
    """``settings`` trained for ``budget`` epochs with ``seed``: the seed is written only where it says something
    (given in ``settings``, or other than the model's default 0), so the keys of a log of settings without a seed
    stay those they were."""
    more = {"seed": int(seed)} if "seed" in settings or int(seed) != 0 else {}
    return dict(settings, max_epoch=int(budget), **more)


def upgrade_log(log_path):
    """A log written before the ``seed`` column (every run of seed 0) rewritten with it, atomically, under the
    log's lock; a log of the current columns, or none, is left alone. Returns whether it was rewritten."""
    log_path = Path(log_path)
    if not log_path.exists():
        return False
    with runs.exclusive(log_path):
        header = log_path.read_text().split("\n", 1)[0].strip().split(",")
        if header != OLD_COLUMNS:
            return False
        log = pd.read_csv(log_path, dtype={"key": str})
        log.insert(1, "seed", 0)
        buffer = io.StringIO()
        log.to_csv(buffer, index=False)
        atomic_write(log_path, lambda f: f.write(buffer.getvalue().encode()))
    return True


def budget_runs(settings, budgets, X_train, y_train, X_val, y_val, log_path, n_jobs=1, fresh=False, progress=True,
                seeds=None):
    """Train ``settings`` (``MLP`` keyword arguments) once for each number of epochs in ``budgets`` and each seed of
    ``seeds`` (by default the seed of ``settings``, 0 if it has none), ``n_jobs`` at a time, and return their rows
    of the log at ``log_path``: the budgets in their order, seed after seed.

    Runs already in the log with the same settings and data (its ``key``) are read from it, unless ``fresh``; a log
    of the time before the ``seed`` column is upgraded first (:func:`upgrade_log`: its runs are of seed 0).
    """
    budgets = [int(budget) for budget in budgets]
    if not budgets or len(set(budgets)) != len(budgets) or min(budgets) < 1:
        raise ValueError(f"budgets must be distinct numbers of epochs of at least 1, got {budgets}")
    seeds = [int(settings.get("seed", 0))] if seeds is None else [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    log_path = Path(log_path)
    if fresh and log_path.exists():
        with runs.exclusive(log_path):
            runs.backup(log_path)
    upgrade_log(log_path)
    rows = []
    for seed in seeds:  # one keyed search per seed: its runs differ by their budget alone
        rows += runs.keyed_runs(
            [budget_settings(settings, budget, seed) for budget in budgets], (X_train, y_train, X_val, y_val),
            log_path, LOG_COLUMNS, WHAT,
            lambda model: {"seed": int(model.seed), **runs.outcome(model), "val_images": len(y_val)},
            lambda row: {"epochs": row["max_epoch"], "seed": row["seed"], "val_acc": f"{row['best_val_acc']:.4f}"},
            n_jobs=n_jobs, progress=progress, desc=f"budgets, seed {seed}")
    return pd.DataFrame(rows, columns=LOG_COLUMNS)


def read_budget_log(log_path=LOG_PATH, settings=None, data=None):
    """The rows of a log of :func:`budget_runs` (the committed one by default), with their columns checked; a log
    of the time before the ``seed`` column is read as runs of seed 0.

    Given the ``settings`` and ``data`` (``X_train, y_train, X_val, y_val``) of the budgets wanted, only their rows
    are kept (by their ``key``), and a warning counts the others. Without them, a budget and seed logged twice under
    two keys is an error: the log mixes two recipes or two data sets, and no rule may choose from the mixture."""
    header = Path(log_path).read_text().split("\n", 1)[0].strip().split(",")
    old = header == OLD_COLUMNS
    log = runs.read_log(log_path, OLD_COLUMNS if old else LOG_COLUMNS, WHAT,
                        " Pass fresh=True to start a new one (the old one is kept as .bak).",
                        key=lambda row: (row["max_epoch"], row.get("seed", 0), row["key"]))
    if old:
        log.insert(1, "seed", 0)
    if settings is not None:
        keys = [runs.run_key(budget_settings(settings, budget, seed), data)
                for budget, seed in zip(log["max_epoch"], log["seed"], strict=True)]
        mine = log["key"].to_numpy() == keys
        if not mine.all():
            warnings.warn(f"{log_path}: {int((~mine).sum())} rows of other settings or other data left out",
                          stacklevel=2)
        log = log[mine].reset_index(drop=True)
    twice = log.duplicated(["max_epoch", "seed"])
    mixed = sorted(log.loc[twice, "max_epoch"].unique().tolist())
    if mixed:
        raise ValueError(f"{log_path} logs the budgets {mixed} under two keys: it mixes runs of two recipes or data "
                         "sets. Read it with the settings and data wanted (read_budget_log(path, settings, data)), "
                         "or start a new log (--fresh)")
    return log


def budget_means(table):
    """The runs of ``table`` (rows of :func:`budget_runs`) by budget, diverged runs left out: ``max_epoch, seeds,
    mean_val_acc, sd_val_acc`` (over the seeds, ``ddof=1``; NaN for one seed), ``val_images``, ``min_val_acc`` and
    ``max_val_acc``; the budgets in increasing order, those with no usable run left out."""
    usable = table[~table["diverged"].astype(bool)]
    grouped = usable.groupby("max_epoch")
    means = pd.DataFrame({"seeds": grouped["best_val_acc"].size(), "mean_val_acc": grouped["best_val_acc"].mean(),
                          "sd_val_acc": grouped["best_val_acc"].std(ddof=1),
                          "min_val_acc": grouped["best_val_acc"].min(), "max_val_acc": grouped["best_val_acc"].max(),
                          "val_images": grouped["val_images"].min()})
    return means.reset_index().sort_values("max_epoch").reset_index(drop=True)


def budget_rule(table):
    """The one-standard-error rule on the mean of the seeds of each budget, with what decides it.

    For each budget the runs' best validation accuracies are averaged over its seeds. The best budget is the one of
    the highest mean ``p`` over its ``k`` seeds; its standard error is

        ``se = sqrt(p (1 - p) / n + s^2 / k)``

    - ``p (1 - p) / n``: the binomial error of an accuracy measured on the ``n`` validation images. It is not
      divided by ``k``: the runs of every seed are measured on the same images, and runs of one recipe get mostly
      the same images right, so this error is shared by the seeds and does not average out;
    - ``s^2 / k``: the error of the mean of ``k`` seeds, ``s^2`` being the variance between seeds (``ddof=1``)
      pooled over the budgets that have two seeds or more (each budget's own variance from two seeds would rest on a
      single degree of freedom). With one seed per budget there is no ``s^2`` and the rule is the single-run one,
      ``sqrt(p (1 - p) / n)``.

    The chosen budget is the fewest epochs whose mean reaches ``p - se``. Returns ``{"chosen", "threshold",
    "best_budget", "best_mean", "se", "binomial_se", "seed_sd", "seed_sd_df", "seeds", "val_images",
    "margin_images", "shorter", "shorter_shortfall_images", "table"}``: ``margin_images`` is by how many validation
    images (of ``n``, for the mean run) the chosen budget clears the threshold; ``shorter`` is the next budget below
    the chosen one (None if it is the shortest) and ``shorter_shortfall_images`` by how many images its mean falls
    short; ``table`` is :func:`budget_means` with each budget's ``images_above_threshold`` (negative below it).
    ``chosen_if_binomial_averaged`` and ``threshold_if_binomial_averaged`` are the rule's choice and threshold with
    the binomial term divided by ``k`` too (``sqrt(p (1 - p) / (n k) + s^2 / k)``), which treats the seeds' errors on
    the validation images as independent: how much the choice depends on that convention.
    """
    if table.empty:
        raise ValueError("the log holds no budget: train them first (python -m study.budget)")
    means = budget_means(table)
    if means.empty:
        raise ValueError("every budget diverged: nothing to choose from")
    usable = table[~table["diverged"].astype(bool)]
    deviations = usable["best_val_acc"] - usable.groupby("max_epoch")["best_val_acc"].transform("mean")
    df = int((means["seeds"] - 1).sum())
    seed_var = float((deviations ** 2).sum() / df) if df else 0.0
    best = means.loc[means["mean_val_acc"].idxmax()]
    p, n, k = float(best["mean_val_acc"]), int(best["val_images"]), int(best["seeds"])
    binomial_var = p * (1 - p) / n
    se = math.sqrt(binomial_var + seed_var / k)
    threshold = p - se
    means["images_above_threshold"] = (means["mean_val_acc"] - threshold) * means["val_images"]
    within = means[means["mean_val_acc"] >= threshold]
    chosen = within.iloc[0]
    # The sensitivity of the choice to the convention: the binomial error averaged over the seeds as if their errors
    # on the validation images were independent (the smaller error, the stricter threshold).
    averaged_threshold = p - math.sqrt(binomial_var / k + seed_var / k)
    averaged = means.loc[means["mean_val_acc"] >= averaged_threshold, "max_epoch"]
    shorter = means[means["max_epoch"] < chosen["max_epoch"]]
    return {"chosen": int(chosen["max_epoch"]), "threshold": threshold, "best_budget": int(best["max_epoch"]),
            "best_mean": p, "se": se, "binomial_se": math.sqrt(binomial_var), "seed_sd": math.sqrt(seed_var),
            "seed_sd_df": df, "seeds": k, "val_images": n,
            "margin_images": float(chosen["images_above_threshold"]),
            "shorter": int(shorter["max_epoch"].iloc[-1]) if len(shorter) else None,
            "shorter_shortfall_images": float(-shorter["images_above_threshold"].iloc[-1]) if len(shorter) else None,
            "chosen_if_binomial_averaged": int(averaged.iloc[0]), "threshold_if_binomial_averaged": averaged_threshold,
            "table": means}


def choose_budget(table):
    """``(max_epoch, threshold)`` of :func:`budget_rule`: the fewest epochs of ``table`` (rows of
    :func:`budget_runs`) whose mean best validation accuracy over its seeds is at least the best budget's mean minus
    one standard error; diverged runs are never chosen."""
    rule = budget_rule(table)
    return rule["chosen"], rule["threshold"]


def describe_rule(rule):
    """:func:`budget_rule` in a sentence or two, as the notebook and ``python -m study.budget`` print it."""
    text = (f"best mean: {rule['best_budget']} epochs, {rule['best_mean']:.4f} over {rule['seeds']} seeds; one "
            f"standard error {rule['se']:.4f} (binomial {rule['binomial_se']:.4f} on {rule['val_images']:,} images, "
            f"sd between seeds {rule['seed_sd']:.4f} on {rule['seed_sd_df']} degrees of freedom); threshold "
            f"{rule['threshold']:.4f}: the fewest epochs within it is {rule['chosen']}, "
            f"{rule['margin_images']:.1f} validation images above the threshold")
    if rule["shorter"] is not None:
        text += (f"; {rule['shorter']} epochs fall {rule['shorter_shortfall_images']:.1f} images short of it")
    if rule["chosen_if_binomial_averaged"] != rule["chosen"]:
        text += (f". With the binomial error averaged over the seeds as well (threshold "
                 f"{rule['threshold_if_binomial_averaged']:.4f}) the rule would choose "
                 f"{rule['chosen_if_binomial_averaged']}")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, one BLAS thread each")
    parser.add_argument("--fresh", action="store_true", help="train every budget again (the old log is kept)")
    args = parser.parse_args(argv)
    cfg = config.study_config(quick=False)
    X_train, y_train, X_val, y_val, _, _ = mnist_reader.load_fashion_mnist(seed=cfg.split_seed,
                                                                           val_fraction=cfg.val_fraction)
    table = budget_runs(cfg.wide_settings, args.budgets, X_train, y_train, X_val, y_val,
                        LOG_PATH, n_jobs=args.jobs, fresh=args.fresh, seeds=args.seeds)
    rule = budget_rule(table)
    print(table.drop(columns="key").to_string(index=False))
    print(rule["table"].round(4).to_string(index=False))
    print(describe_rule(rule))


if __name__ == "__main__":
    main()
