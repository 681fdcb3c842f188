"""Section 7 of the study, "Beyond the original study": other update rules and a wider network with dropout.

Every contender trains on the same split as the seed grid, and is recorded (``study.records``) so that the notebook,
run again, reads it instead of training it. Where a contender has candidate settings (a few learning rates), the one
with the best validation accuracy is kept (``runs.ranked``, the rule the searches use); the test set
is measured only afterwards, to fill the comparison table, and never chooses anything; ``study.stats`` then says
which of the differences on the test set are significant. Section 7's wide network is ``config.WIDE_RECIPE``; it
trains with :func:`fit_with_progress`, which shows its epochs as they pass and resumes it from a checkpoint.
"""

import sys

import pandas as pd
from tqdm import tqdm

from study import runs, stats
from study.metrics import per_class_accuracy, per_class_table


def fit_with_progress(settings, X_train, y_train, X_val, y_val, save_path=None, checkpoint_path=None, fresh=False,
                      progress=True, desc="training"):
    """``runs.fit`` for a long run, under a progress bar on stdout that moves after every epoch (epoch, validation
    accuracy of the last and of the best check). ``checkpoint_path`` and ``fresh`` are ``runs.fit``'s."""
    with tqdm(total=settings["max_epoch"], desc=desc, unit="epoch", disable=not progress, file=sys.stdout) as bar:

        def show(model):
            bar.update(model.epoch - bar.n)
            bar.set_postfix(val_acc=f"{model.history['val_acc'].iloc[-1]:.4f}", best=f"{model.best_val_acc:.4f}")

        return runs.fit(settings, X_train, y_train, X_val, y_val, save_path=save_path,
                        checkpoint_path=checkpoint_path, fresh=fresh, on_epoch=show)


def best_on_validation(models):
    """The model with the best validation numbers by ``runs.ranked`` (accuracy, then lower loss; the first of equal
    ones); diverged runs never win."""
    ranked = runs.ranked(pd.DataFrame([runs.outcome(model) for model in models]))
    if ranked.empty:
        raise ValueError("every candidate diverged: try smaller learning rates")
    return models[ranked.index[0]]


def describe(model):
    """The settings that tell the contenders apart, in a few words."""
    settings = model.config()
    optimizer = dict(settings["optimizer"])
    L2 = f"L2 {settings['L2_lambda']:g}" if settings["L2_lambda"] else "no L2"
    words = [runs.layers_name(settings["layers"]), optimizer.pop("name"), f"lr {settings['lr']:g}",
             f"{settings['lr_schedule']} schedule", L2]
    if settings["batch_norm"]:
        words.append("batch normalisation")
    if settings["dropout"]:
        words.append(f"dropout {settings['dropout']:g}")
    return ", ".join(words)


def comparison_row(name, model, X_test, y_test):
    """One row of the comparison table: validation numbers, then the test numbers (accuracy with its exact 95%
    interval, loss), epochs and wall time."""
    test_acc, test_loss = model.evaluate(X_test, y_test)
    low, high = stats.accuracy_ci(round(test_acc * len(y_test)), len(y_test))
    return {"model": name, "settings": describe(model), "val_accuracy": model.best_val_acc,
            "test_accuracy": test_acc, "test_ci_low": low, "test_ci_high": high, "test_loss": test_loss,
            "epochs": model.epoch, "train_time_s": model.train_time_s}


def class_changes(y_true, before, after, class_names):
    """Per-class test accuracy of two sets of predictions and the change, largest gain first: the ``after``
    accuracy with its exact 95% interval (``after_ci_low``, ``after_ci_high``; the ``before`` ones are
    ``metrics.per_class_table``'s), and McNemar's exact p-value of the change on the class's own images
    (``stats.mcnemar``)."""
    n = len(class_names)
    y_true, before, after = (pd.Series(v).to_numpy() for v in (y_true, before, after))
    after_table = per_class_table(y_true, after, class_names)
    table = pd.DataFrame({"class": class_names, "before": per_class_accuracy(y_true, before, n),
                          "after": after_table["accuracy"], "after_ci_low": after_table["ci_low"],
                          "after_ci_high": after_table["ci_high"]})
    table["change"] = table["after"] - table["before"]
    table["p_value"] = [stats.mcnemar(y_true[y_true == c], before[y_true == c], after[y_true == c])["p_value"]
                        for c in range(n)]
    return table.sort_values("change", ascending=False, kind="mergesort").reset_index(drop=True)


def chosen_on_validation(models, groups):
    """The name of each group's candidate chosen on validation (:func:`best_on_validation`): ``{label: name}`` for
    ``groups`` (``{label: names}``, e.g. ``{"(a) momentum": momentum_candidates}`` with the dicts of
    ``config.beyond_candidates``, or ``{"(c1) ...": sgd, "(c2) ...": adamw}`` with those of
    ``config.ablation_candidates``) and ``models`` (``{name: model}``, as ``records.fit_or_read`` returns them)."""
    chosen = {}
    for label, names in groups.items():
        names = list(names)
        winner = best_on_validation([models[name] for name in names])
        chosen[label] = next(name for name in names if models[name] is winner)
    return chosen


def candidate_table(models, chosen=None):
    """The candidates ``models`` (``{name: model}``) side by side on validation, the only numbers that choose
    among them: ``name``, ``settings`` (:func:`describe`), ``lr``, ``best_val_acc``, ``best_val_loss``,
    ``best_iteration``, ``epochs``, ``diverged``, ``train_time_s``, and ``chosen``, the label of the group that
    chose it (``chosen``: :func:`chosen_on_validation`'s dict) or ``""``."""
    chosen_by = {name: label for label, name in (chosen or {}).items()}
    return pd.DataFrame([{"name": name, "settings": describe(model), "lr": float(model.lr), **runs.outcome(model),
                          "epochs": int(model.epoch), "chosen": chosen_by.get(name, "")}
                         for name, model in models.items()],
                        columns=["name", "settings", "lr", "best_val_acc", "best_val_loss", "best_iteration",
                                 "diverged", "train_time_s", "epochs", "chosen"])


def mcnemar_against(y_true, predictions, references):
    """``stats.mcnemar_table`` of every model of ``predictions`` (``{name: predicted labels}``) that is not among
    ``references`` against each of the ``references`` in turn, on the same images: one table, its ``reference``
    column naming the model each row is compared with (the ablation against the seed grid's best and against (c))."""
    others = {name: pred for name, pred in predictions.items() if name not in references}
    return pd.concat([stats.mcnemar_table(y_true, {reference: predictions[reference], **others}, reference)
                      .assign(reference=reference) for reference in references], ignore_index=True)


def recorded_run(records, name, settings, data, made_by="Fashion_mnist_model.ipynb"):
    """The run ``name`` of ``settings``, read from ``records`` and never trained here: a model of the first notebook
    that the second compares with. FileNotFoundError naming ``made_by`` when it has no record for these settings and
    ``data`` (``X_train, y_train, X_val, y_val``)."""
    if records.missing({name: settings}, data):
        raise FileNotFoundError(f"{name} has no record in {records.log_path} for these settings and data: execute "
                                f"{made_by} first (make run), which trains it")
    return records.read_all({name: settings})[name]
