"""Successive halving over the grid: many settings trained briefly, the best few trained on, one trained to the end.

As scikit-learn's ``HalvingGridSearchCV`` does it, with epochs as the resource. Rung 0 trains every setting of the
grid for ``min_epochs`` epochs; each later rung keeps the best ``ceil(n / factor)`` runs of the rung before
(``runs.ranked``: validation accuracy, then lower validation loss; diverged runs rank last) and trains them to
``factor`` times as many epochs, ``min_epochs * factor**k``, until a rung reaches ``max_epochs``: that last rung
trains to exactly ``max_epochs`` (so does a rung that holds a single run, since nothing is left to compare it with).
With 48 settings, ``factor=3`` and 2 to 40 epochs the rungs hold 48, 16, 6 and 2 runs trained to 2, 6, 18 and 40
epochs: 276 epochs instead of the 1,920 of the full grid.

A survivor is not trained again from scratch: the same ``MLP`` object continues where it stopped, through
``train(..., epochs=k)``, with its generator, optimizer state and best-so-far. Every model is created with
``max_epoch=max_epochs``, the length of the whole planned run, so its learning rate follows the schedule of an
uninterrupted run: the rate of a batch is a function of the global batch index (counted over the run, not over the
rung) and of ``max_epoch`` (the cosine schedule's length), and both are the same whether a run is trained at once or
in rungs. A survivor's numbers therefore equal, bit for bit, those of the same settings trained in one go for as
many epochs; tests/test_halving.py checks it for the step and the cosine schedules.

Each finished run appends a row to the log (``rung``, the settings, ``epochs`` and ``train_time_s`` so far, the best
validation numbers so far), so the log holds a row per run per rung. Beside it, ``<log>.recipe.json`` records the
recipe, the data's fingerprint and the BLAS kernels, as the grid's does. The search resumes from its log like the
grid: a run already logged in a rung is read, not trained; a survivor whose next rung is missing is trained again
from the start to that rung's epochs (its model did not outlive the process), which gives the same numbers, as the
paragraph above says. A log of another recipe or other data is refused; ``fresh=True`` moves it aside and starts
again. Model selection uses validation numbers only; the test set never enters this module.
"""

import math
import pickle
import sys

import pandas as pd
from tqdm import tqdm

from study import config, recipes, runs

HALVING_COLUMNS = ["rung", *runs.SETTINGS, "epochs", "best_val_acc", "best_val_loss", "best_iteration", "diverged",
                   "train_time_s"]


def rung_plan(n_settings, factor=3, min_epochs=2, max_epochs=40):
    """The rungs of a search over ``n_settings`` settings: a list of ``(runs, epochs)``, epochs counted from the start.

    >>> rung_plan(48, factor=3, min_epochs=2, max_epochs=40)
    [(48, 2), (16, 6), (6, 18), (2, 40)]
    """
    if n_settings < 1:
        raise ValueError("the grid holds no settings")
    if int(factor) != factor or factor < 2:
        raise ValueError(f"factor must be an integer of at least 2, got {factor!r}")
    if not 1 <= min_epochs <= max_epochs:
        raise ValueError(f"need 1 <= min_epochs <= max_epochs, got min_epochs={min_epochs}, max_epochs={max_epochs}")
    plan, n_runs, rung = [], n_settings, 0
    while True:
        epochs = max_epochs if n_runs == 1 else min(min_epochs * factor**rung, max_epochs)
        plan.append((n_runs, epochs))
        if epochs == max_epochs:
            return plan
        n_runs, rung = math.ceil(n_runs / factor), rung + 1


def train_rung(model, epochs, X_train, y_train, X_val, y_val):
    """Train ``model`` on until it has ``epochs`` epochs in all (or has diverged or stopped early); return it.

    Module-level so that ``runs.dispatch`` can send it to joblib's workers. ``model`` is an ``MLP`` or, on its way
    to a worker, its pickle: joblib's loky backend hands arrays over 1 MB (the first layer of a 784-512 network, say)
    to its workers as read-only memory maps, which a model that trains in place cannot use; out of a pickle they come
    as ordinary arrays.
    """
    if isinstance(model, bytes):
        model = pickle.loads(model)
    model.train(X_train, y_train, X_val, y_val, epochs=epochs - model.epoch)
    return model


def read_halving_log(log_path):
    """Read a halving-search log, checking that its columns are :data:`HALVING_COLUMNS`."""
    return runs.read_log(log_path, HALVING_COLUMNS, "a halving-search log")


def halving_search(grid, X_train, y_train, X_val, y_val, log_path, factor=3, min_epochs=2, max_epochs=40, n_jobs=1,
                   progress=True, fresh=False, **model_kwargs):
    """Successive halving over the settings dicts of ``grid``; return the log as a DataFrame (see the module).

    ``model_kwargs`` go to :class:`MLP` (activation, batch_size, seed, ...), but not ``max_epoch``, which is
    ``max_epochs``. The runs already in the log at ``log_path`` (same recipe, same data) are read instead of trained;
    ``fresh=True`` moves the log and its recipe record to ``.bak`` and starts afresh. ``n_jobs`` trains the runs of
    a rung as ``grid.grid_search`` does, through ``runs.dispatch`` (in this process with ``n_jobs=1``, else in
    joblib's workers, dask included); the models travel to the workers and back, and only this process writes the
    log. Runs share the seed and compute with one BLAS thread each (``runs.blas_threads``), so the numbers depend
    neither on the order nor on ``n_jobs``.
    """
    if "max_epoch" in model_kwargs:
        raise TypeError("halving_search sets max_epoch itself: pass max_epochs")
    settings = runs.unique_settings(grid)
    plan = rung_plan(len(settings), factor, min_epochs, max_epochs)
    recipe = dict(model_kwargs, max_epoch=max_epochs)
    check_first_rung_measures(recipe, len(X_train), plan[0][1])

    with runs.prepared_log(log_path, HALVING_COLUMNS, fresh, also=[recipes.recipe_path(log_path)]) as log_path:
        logged = read_halving_log(log_path)
        recipes.check_recipe(log_path, recipes.describe_recipe(recipe, X_train, y_train, X_val, y_val),
                          has_runs=len(logged) > 0)
        return _search(settings, plan, X_train, y_train, X_val, y_val, log_path, n_jobs, progress, recipe, logged)


def check_first_rung_measures(recipe, n_train, epochs):
    """ValueError unless the first rung's ``epochs`` reach a validation check (every ``print_iter`` batches): a rung
    that measures nothing would rank its runs by NaN and promote the first settings of the grid."""
    batches = epochs * -(-n_train // recipe.get("batch_size", 100))
    print_iter = recipe.get("print_iter", 100)
    if batches < print_iter:
        raise ValueError(f"the first rung trains {batches} batches ({epochs} epochs of {n_train} rows), fewer than "
                         f"print_iter={print_iter}: it would measure no validation accuracy to rank its runs by. "
                         "Lower print_iter or raise min_epochs")


def _search(settings, plan, X_train, y_train, X_val, y_val, log_path, n_jobs, progress, recipe, logged):
    """The rungs of :func:`halving_search`, once the log is ready; ``recipe``: the models' other arguments;
    ``logged``: the rows already in the log, which are read instead of trained."""
    done = {(int(row["rung"]), runs.settings_key(row)): row for row in logged.to_dict("records")}
    models, survivors, postfix = {}, list(settings), {}
    with tqdm(total=sum(n_runs for n_runs, _ in plan), desc="halving search", unit="run", disable=not progress,
              file=sys.stdout) as bar:
        for rung, (n_runs, epochs) in enumerate(plan):
            postfix.update(rung=f"{rung + 1}/{len(plan)}", runs=n_runs, epochs=epochs)
            bar.set_postfix(postfix)
            rows = {key: done[(rung, key)] for key in survivors if (rung, key) in done}
            bar.update(len(rows))
            pending = [models.get(key) or runs.new_model(dict(settings[key], **recipe))
                       for key in survivors if key not in rows]
            # Here the models train in place; to a worker they travel pickled (see train_rung).
            sent = pending if runs.in_process(n_jobs) else map(pickle.dumps, pending)
            for model in runs.dispatch(train_rung, sent, epochs, X_train, y_train, X_val, y_val, n_jobs=n_jobs):
                key = runs.settings_key(model.config())
                models[key] = model
                rows[key] = dict(runs.log_row(settings[key], model), rung=rung, epochs=int(model.epoch))
                runs.append_rows(log_path, [rows[key]], HALVING_COLUMNS)
                bar.update()
            if rung + 1 < len(plan):
                # Ranked in grid order, so that an exact tie goes to the setting earlier in the grid.
                ranked = runs.ranked(pd.DataFrame([rows[key] for key in settings if key in rows]), usable_only=False)
                survivors = [runs.settings_key(row) for row in ranked.head(plan[rung + 1][0]).to_dict("records")]
                models = {key: models[key] for key in survivors if key in models}
                best = ranked.iloc[0]
                postfix.update(best_val_acc=f"{best['best_val_acc']:.4f}",
                               best=runs.run_name(config.settings_from_row(best)))
    return read_halving_log(log_path)


def halving_result(log):
    """What a halving search found, from its log: a dict with

    - ``settings``: the best run of the last rung (``runs.ranked``), ``dict(layers=tuple, lr=, L2_lambda=)``;
    - ``best_val_acc``, ``best_val_loss``: its best validation numbers;
    - ``epochs_spent``: the epochs trained over the whole search, each run counted up to where it stopped;
    - ``train_time_s``: the training time of all its runs, each counted up to where it stopped;
    - ``rungs``: the number of rungs.
    """
    # Sorted by settings first, so that an exact tie goes the same way whatever order the runs finished in.
    ranked = runs.ranked(log[log["rung"] == log["rung"].max()].sort_values(runs.SETTINGS))
    if ranked.empty:
        raise ValueError("the last rung holds no finished, non-diverged run")
    best = ranked.iloc[0]
    per_run = log.groupby(runs.SETTINGS)[["epochs", "train_time_s"]].max()
    return {
        "settings": config.settings_from_row(best),
        "best_val_acc": float(best["best_val_acc"]),
        "best_val_loss": float(best["best_val_loss"]),
        "epochs_spent": int(per_run["epochs"].sum()),
        "train_time_s": float(per_run["train_time_s"].sum()),
        "rungs": int(log["rung"].nunique()),
    }


def compare_searches(grid_log, halving_found, max_epoch):
    """The grid's best run beside successive halving's pick: settings, validation accuracy over the full
    ``max_epoch`` epochs (the grid's log has it for every setting), and the epochs and training time each search
    spent, summed over its runs (read from the logs, so a resumed notebook shows the numbers of the runs that made
    them)."""
    grid_row = runs.ranked(grid_log).iloc[0]
    halving_row = runs.find_row(grid_log, halving_found["settings"])
    return pd.DataFrame([
        {"search": "grid", "settings": runs.run_name(config.settings_from_row(grid_row)),
         "best_val_acc": grid_row["best_val_acc"], "epochs": len(grid_log) * max_epoch,
         "train_time_s": float(grid_log["train_time_s"].sum())},
        {"search": "successive halving", "settings": runs.run_name(halving_found["settings"]),
         "best_val_acc": halving_row["best_val_acc"], "epochs": halving_found["epochs_spent"],
         "train_time_s": halving_found["train_time_s"]},
    ])
