"""What the study measures besides training: the confusion matrix, per-class accuracy, and the hidden units.

One module for the numbers that both the figures (``study.plots``) and the comparisons (``study.beyond``, the
notebook's tables) use, so that a figure and a table of the same quantity cannot disagree.
"""

from itertools import combinations

import numpy as np
import pandas as pd

from modules import MEASURE_DTYPE, Activation
from study import stats


def confusion_matrix(y_true, y_pred, n_classes):
    """Counts ``C[i, j]`` of samples with true class ``i`` predicted as ``j``."""
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def per_class_accuracy(y_true, y_pred, n_classes):
    """Fraction of each true class predicted correctly (NaN for a class with no sample)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    return np.divide(np.diag(cm), support, out=np.full(n_classes, np.nan), where=support > 0)


def per_class_table(y_true, y_pred, class_names):
    """Per class: its images, the accuracy on them and the accuracy's exact 95% interval (``stats.accuracy_ci``;
    NaN for a class without images)."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    support, right = cm.sum(axis=1), np.diag(cm)
    intervals = [stats.accuracy_ci(k, n) if n else (np.nan, np.nan) for k, n in zip(right, support, strict=True)]
    return pd.DataFrame({"class": class_names, "test images": support,
                         "accuracy": per_class_accuracy(y_true, y_pred, len(class_names)),
                         "ci_low": [low for low, _ in intervals], "ci_high": [high for _, high in intervals]})


# -- hidden units ------------------------------------------------------------------------------------------------


def hidden_activations(model, X):
    """The output of every hidden layer's activation for the rows of X, as ``{"hidden layer 1": (N, units), ...}``,
    computed in ``MEASURE_DTYPE`` as ``MLP.evaluate`` measures."""
    _, outputs = model.forward(np.asarray(X, dtype=MEASURE_DTYPE), save_activations=True)
    hidden = {}
    for layer, output in zip(model.net, outputs, strict=True):
        if isinstance(layer, Activation):
            hidden[f"hidden layer {len(hidden) + 1}"] = output
    return hidden


def weight_change_statistics(model, initial):
    """How far training moved each FC layer's weights from where they started, one row per layer.

    ``initial`` is the same architecture as first initialised (same seed): ``relative_change`` is
    ``||W - W0|| / ||W0||``, ``correlation`` the correlation of ``W`` with ``W0`` over all weights, and
    ``units_changed_under_10pct`` the fraction of units (columns) whose incoming weights moved by less than a tenth
    of their initial norm.
    """
    rows = []
    for i, (fc, fc0) in enumerate(zip(model.fc_layers, initial.fc_layers, strict=True), start=1):
        W, W0 = np.asarray(fc.W, dtype=np.float64), np.asarray(fc0.W, dtype=np.float64)
        unit_change = np.linalg.norm(W - W0, axis=0) / np.linalg.norm(W0, axis=0)
        rows.append({"layer": f"FC{i} {W.shape[0]}x{W.shape[1]}",
                     "relative_change": float(np.linalg.norm(W - W0) / np.linalg.norm(W0)),
                     "correlation": float(np.corrcoef(W.ravel(), W0.ravel())[0, 1]),
                     "units_changed_under_10pct": float(np.mean(unit_change < 0.1))})
    return pd.DataFrame(rows)


def class_mean_activations(activations, labels, n_classes):
    """(n_classes, units) mean activation of each unit over the samples of each class (NaN for an empty class)."""
    activations = np.asarray(activations, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.intp)
    sums = np.zeros((n_classes, activations.shape[1]))
    np.add.at(sums, labels, activations)
    counts = np.bincount(labels, minlength=n_classes)[:, None]
    return np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)


def dead_units(activations):
    """Boolean mask of the units that are zero on every sample (a ReLU unit that never fires)."""
    return ~np.any(np.asarray(activations) > 0, axis=0)


def unit_statistics(hidden):
    """One row per hidden layer: units, dead units, and the mean fraction of units active per image.

    ``hidden`` maps a layer name to its ReLU output (N, units).
    """
    rows = []
    for name, acts in hidden.items():
        dead = dead_units(acts)
        rows.append({"layer": name, "units": acts.shape[1], "dead_units": int(dead.sum()),
                     "dead_fraction": float(dead.mean()),
                     "active_per_image": float(np.mean(np.asarray(acts) > 0))})
    return pd.DataFrame(rows)


def class_activity(activations, images, labels, class_names):
    """Per class: the mean pixel value of its images, and the mean activation and active fraction of the units."""
    activations, images, labels = np.asarray(activations), np.asarray(images), np.asarray(labels)
    rows = [{"class": name, "mean_pixel": float(images[labels == c].mean()),
             "mean_activation": float(activations[labels == c].mean()),
             "active_fraction": float(np.mean(activations[labels == c] > 0))}
            for c, name in enumerate(class_names) if np.any(labels == c)]
    return pd.DataFrame(rows)


def similar_class_pairs(mean_activations, class_names, k=5):
    """The ``k`` class pairs whose mean activation patterns are closest (cosine similarity), most similar first."""
    means = np.asarray(mean_activations, dtype=np.float64)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    unit = np.divide(means, norms, out=np.zeros_like(means), where=norms > 0)
    similarity = unit @ unit.T
    rows = [{"class_a": class_names[i], "class_b": class_names[j], "cosine_similarity": float(similarity[i, j])}
            for i, j in combinations(range(len(class_names)), 2)]
    return (pd.DataFrame(rows).sort_values("cosine_similarity", ascending=False, kind="mergesort")
            .head(k).reset_index(drop=True))


def confused_class_pairs(cm, class_names, k=5):
    """The ``k`` class pairs mistaken for each other most often (both directions summed), most first."""
    cm = np.asarray(cm)
    rows = [{"class_a": class_names[i], "class_b": class_names[j], "a_as_b": int(cm[i, j]), "b_as_a": int(cm[j, i]),
             "errors": int(cm[i, j] + cm[j, i])}
            for i, j in combinations(range(len(class_names)), 2)]
    return pd.DataFrame(rows).sort_values("errors", ascending=False, kind="mergesort").head(k).reset_index(drop=True)


def errors_within_groups(cm, groups):
    """For each named group of class indices, the misclassifications that stay inside the group.

    Returns ``{name: (errors inside the group, share of all errors)}``.
    """
    cm = np.asarray(cm)
    total = cm.sum() - np.trace(cm)
    result = {}
    for name, members in groups.items():
        block = cm[np.ix_(members, members)]
        inside = int(block.sum() - np.trace(block))
        result[name] = (inside, inside / total if total else float("nan"))
    return result
