"""Section 7 of the study, "Beyond the original study": other update rules and a wider network with dropout.

Every contender trains on the same split as the seed grid. Where a contender has candidate settings (a few learning
rates), the one with the best validation accuracy is kept; the test set is measured only afterwards, to fill the
comparison table, and never chooses anything.
"""

from pathlib import Path

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits

from modules import MLP
from study.grid import blas_threads
from study.metrics import per_class_accuracy


def fit(settings, X_train, y_train, X_val, y_val, n_threads=None, save_path=None, checkpoint_path=None):
    """Train ``MLP(**settings)`` quietly and return the trained model (it holds its best-validation weights).

    With ``checkpoint_path`` the run writes its state there after every epoch and, when a checkpoint of the same
    settings is already there, resumes it instead of starting over: an interrupted run loses at most one epoch, and
    a finished one is not trained again.
    """
    settings = dict(settings, print_log=False)
    with threadpool_limits(limits=n_threads):
        model = MLP(**settings)
        if checkpoint_path is not None and Path(checkpoint_path).exists():
            resumed = MLP.from_checkpoint(checkpoint_path, print_log=False)
            if resumed.config() != model.config():
                raise ValueError(f"{checkpoint_path} holds a run of other settings ({resumed.config()}); delete it "
                                 f"to train {model.config()} from the start")
            model = resumed
        model.train(X_train, y_train, X_val, y_val, save_path=save_path, checkpoint_path=checkpoint_path)
    return model


def fit_candidates(candidates, X_train, y_train, X_val, y_val, n_jobs=1):
    """Train one model per settings dict, ``n_jobs`` at a time, with the search's BLAS threads per run
    (``tuning.blas_threads``), so that the results do not depend on ``n_jobs``."""
    n_threads = blas_threads(n_jobs)
    return joblib.Parallel(n_jobs=n_jobs)(
        joblib.delayed(fit)(settings, X_train, y_train, X_val, y_val, n_threads) for settings in candidates)


def best_on_validation(models):
    """The model with the best validation accuracy (lower validation loss breaks ties); diverged runs never win."""
    finished = [model for model in models if not model.diverged]
    if not finished:
        raise ValueError("every candidate diverged: try smaller learning rates")
    return max(finished, key=lambda model: (model.best_val_acc, -model.best_val_loss))


def describe(model):
    """The settings that tell the contenders apart, in a few words."""
    optimizer = model.optimizer.config()
    words = ["-".join(map(str, model.layers)), optimizer.pop("name"), f"lr {model.lr:g}",
             f"{model.lr_schedule} schedule", f"L2 {model.L2_lambda:g}" if model.L2_lambda else "no L2"]
    if model.dropout:
        words.append(f"dropout {model.dropout:g}")
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
