"""Section 7 of the study, "Beyond the original study": other update rules and a wider network with dropout.

Every contender trains on the same split as the seed grid. Where a contender has candidate settings (a few learning
rates), the one with the best validation accuracy is kept (``runs.ranked``, the rule the searches use); the test set
is measured only afterwards, to fill the comparison table, and never chooses anything. Section 7's wide network is
``config.WIDE_RECIPE``; a single run trains with ``runs.fit``, which resumes it from a checkpoint.
"""

import pandas as pd

from study import runs
from study.metrics import per_class_accuracy


def fit_candidates(candidates, X_train, y_train, X_val, y_val, n_jobs=1):
    """Train one model per settings dict (``MLP`` keyword arguments), ``n_jobs`` at a time through
    ``runs.dispatch`` (one BLAS thread per run, so that the results do not depend on ``n_jobs``); the trained models
    in the candidates' order."""
    return list(runs.dispatch(runs.fit, candidates, X_train, y_train, X_val, y_val, n_jobs=n_jobs, ordered=True))


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
    if settings["dropout"]:
        words.append(f"dropout {settings['dropout']:g}")
    return ", ".join(words)


def comparison_row(name, model, X_test, y_test):
    """One row of the comparison table: validation numbers, then the test numbers, epochs and wall time."""
    test_acc, test_loss = model.evaluate(X_test, y_test)
    return {"model": name, "settings": describe(model), "val_accuracy": model.best_val_acc,
            "test_accuracy": test_acc, "test_loss": test_loss, "epochs": model.epoch,
            "train_time_s": model.train_time_s}


def class_changes(y_true, before, after, class_names):
    """Per-class test accuracy of two sets of predictions and the change, largest gain first."""
    n = len(class_names)
    table = pd.DataFrame({"class": class_names, "before": per_class_accuracy(y_true, before, n),
                          "after": per_class_accuracy(y_true, after, n)})
    table["change"] = table["after"] - table["before"]
    return table.sort_values("change", ascending=False, kind="mergesort").reset_index(drop=True)
