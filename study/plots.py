"""Figures for the Fashion-MNIST MLP study; the numbers they show come from ``study.metrics``.

Every ``plot_*`` function returns a matplotlib Figure and never shows or saves it;
:func:`save_figure` writes one to PNG.
"""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fileio import atomic_write
from study.metrics import confusion_matrix

WEIGHT_CMAP = "RdBu_r"  # diverging: red = positive, blue = negative, white = 0


def save_figure(fig, path, dpi=100):
    """Write ``fig`` as PNG to ``path`` atomically, creating the folder; return the path."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    return Path(path)


def _as_images(images):
    """(N, 784) or (N, 28, 28) -> (N, 28, 28)."""
    images = np.asarray(images)
    side = math.isqrt(images[0].size)
    return images.reshape(len(images), side, side)


def _grid(n, ncols, size, **kwargs):
    """Figure with ``n`` axes in rows of ``ncols``; unused cells are removed."""
    ncols = min(n, ncols)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False, **kwargs)
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def _no_ticks(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def _plot_curves(ax_loss, ax_acc, history, epochs=False):
    """Train and validation loss and accuracy of ``history`` against the iteration or, with ``epochs``, against the
    epoch (fractional: runs of different batch sizes take different numbers of iterations per epoch)."""
    x = epochs_of(history) if epochs else history["iteration"]
    ax_loss.plot(x, history["train_loss"], label="train")
    ax_loss.plot(x, history["val_loss"], label="validation")
    ax_acc.plot(x, history["train_acc"], label="train")
    ax_acc.plot(x, history["val_acc"], label="validation")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_acc.set_ylabel("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch" if epochs else "iteration")
        ax.grid(alpha=0.3)
        ax.legend()


def epochs_of(history):
    """Each check's iteration as a fractional epoch: the iterations divided by the iterations of one epoch, which
    the last check (at the end of the last epoch) gives."""
    last = history.iloc[-1]
    return history["iteration"] * last["epoch"] / last["iteration"]


def plot_history(history, title=None):
    """Loss and accuracy (train vs validation) against iteration, side by side."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    _plot_curves(ax_loss, ax_acc, history)
    ax_loss.set_title("Loss")
    ax_acc.set_title("Accuracy")
    if title:
        fig.suptitle(title)
    return fig


def plot_histories_side_by_side(histories, title=None, epochs=False):
    """Compare runs: one column per ``{name: history}`` entry, rows loss and accuracy, against the iteration or, with
    ``epochs``, against the epoch (for runs whose batches differ in size).

    Axes are shared along each row so the curves can be compared by eye, and with ``epochs`` across all panels.
    """
    n = len(histories)
    fig, axes = plt.subplots(
        2, n, figsize=(4 * n, 6), sharex=True if epochs else "col", sharey="row", squeeze=False, layout="constrained"
    )
    for col, (name, history) in enumerate(histories.items()):
        _plot_curves(axes[0, col], axes[1, col], history, epochs=epochs)
        axes[0, col].set_title(name)
    for ax in axes.flat:
        ax.label_outer()  # shared axes: keep labels on the outer panels only
    if title:
        fig.suptitle(title)
    return fig


def plot_validation_curves(histories, title=None, skip_epochs=10):
    """Many runs' validation accuracy and loss against the epoch, one line each (``{name: history}``), from epoch
    ``skip_epochs`` on (a shorter run: its last epoch), where the runs' differences show. Each axis spans what the
    curves cover there, except that a loss curve far above the others (a run that overfits) is cut at the top: the
    loss axis ends a little above the second-highest curve's peak, and the title says which curve leaves it."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    styles = ["-", "--", ":", "-."]
    peaks, floors, tops = {}, [], []
    for i, (name, history) in enumerate(histories.items()):
        checks = history.dropna(subset=["val_acc"])
        checks = checks[checks["epoch"] >= min(skip_epochs, checks["epoch"].max())]  # a short run keeps its last
        style = dict(label=name, linewidth=1.2, linestyle=styles[i // 10 % len(styles)])
        ax_acc.plot(checks["epoch"], checks["val_acc"], **style)
        ax_loss.plot(checks["epoch"], checks["val_loss"], **style)
        peaks[name] = checks["val_loss"].max()
        floors.append(checks["val_acc"].min())
        tops.append(checks["val_acc"].max())
    ax_acc.set_ylim(min(floors) - 0.002, max(tops) + 0.002)
    ranked = sorted(peaks, key=peaks.get)
    cut = []
    if len(ranked) > 2:
        low = ax_loss.get_ylim()[0]
        ceiling = peaks[ranked[-2]] + 0.1 * (peaks[ranked[-2]] - low)
        cut = [name for name in ranked if peaks[name] > ceiling]
        ax_loss.set_ylim(low, ceiling)
    for ax, what in ((ax_acc, "validation accuracy"), (ax_loss, "validation loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.set_title(what + (f" ({', '.join(cut)} rises above the axis)" if cut and ax is ax_loss else ""))
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    return fig


def plot_grid_results(log):
    """Best validation accuracy against learning rate, one panel per architecture.

    One line per L2 strength. Diverged runs are left out of the lines and marked with
    an ``x`` at the bottom of the panel.
    """
    archs = list(dict.fromkeys(log["layers"]))
    l2s = sorted(log["L2_lambda"].unique())
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = _grid(len(archs), ncols=3, size=4, sharey=True, layout="constrained")
    for ax, arch in zip(axes, archs, strict=True):
        runs = log[log["layers"] == arch]
        for i, l2 in enumerate(l2s):
            color = colors[i % len(colors)]
            sel = runs[runs["L2_lambda"] == l2].sort_values("lr")
            ok = sel[~sel["diverged"].astype(bool)]
            bad = sel[sel["diverged"].astype(bool)]
            ax.plot(ok["lr"], ok["best_val_acc"], "o-", color=color, label=f"L2 = {l2:g}")
            # x in data coordinates, y in axes coordinates: the marker sits at the panel's bottom.
            ax.plot(
                bad["lr"],
                np.full(len(bad), 0.03),
                "x",
                color=color,
                markersize=9,
                transform=ax.get_xaxis_transform(),
            )
        ax.set_xscale("log")
        ax.set_title(arch)
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best validation accuracy")
    if log["diverged"].astype(bool).any():
        axes[0].plot([], [], "x", color="gray", label="diverged")
    axes[0].legend(fontsize="small")
    return fig


def plot_class_samples(images, labels, class_names):
    """The first image of each class, five per row."""
    images = _as_images(images)
    labels = np.asarray(labels)
    fig, axes = _grid(len(class_names), ncols=5, size=1.8, layout="constrained")
    for c, (ax, name) in enumerate(zip(axes, class_names, strict=True)):
        idx = np.flatnonzero(labels == c)
        if idx.size:
            ax.imshow(images[idx[0]], cmap="gray")
        ax.set_title(name, fontsize=10)
        _no_ticks(ax)
    fig.suptitle("The first training image of each class")
    return fig


def _draw_confusion_matrix(ax, cm, class_names, title):
    n = len(class_names)
    ax.imshow(cm, cmap="Blues")
    for (i, j), count in np.ndenumerate(cm):
        # White text on dark cells so every number stays readable.
        color = "white" if count > cm.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)


def plot_confusion_matrix(y_true, y_pred, class_names):
    """Confusion matrix counts (rows: true class, columns: predicted class)."""
    fig, ax = plt.subplots(figsize=(7, 6), layout="constrained")
    _draw_confusion_matrix(ax, confusion_matrix(y_true, y_pred, len(class_names)), class_names, "Confusion matrix")
    return fig


def plot_confusion_matrices(y_true, predictions, class_names):
    """Confusion matrices side by side, one per entry of ``predictions`` (title -> predicted labels)."""
    fig, axes = plt.subplots(1, len(predictions), figsize=(6.5 * len(predictions), 6), layout="constrained",
                             squeeze=False)
    for ax, (title, y_pred) in zip(axes[0], predictions.items(), strict=True):
        _draw_confusion_matrix(ax, confusion_matrix(y_true, y_pred, len(class_names)), class_names, title)
    return fig


def plot_confident_mistakes(images, y_true, probabilities, class_names, n=12):
    """The ``n`` wrong predictions the model was surest of (the highest probability of the predicted class), most
    confident first, each titled "predicted (its probability) / true"."""
    images, y_true = _as_images(images), np.asarray(y_true)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(y_true)), predicted]
    wrong = np.flatnonzero(predicted != y_true)
    idx = wrong[np.argsort(-confidence[wrong], kind="stable")[:n]]
    if not len(idx):
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no wrong predictions", ha="center", va="center")
        ax.axis("off")
        return fig
    fig, axes = _grid(len(idx), ncols=6, size=1.9, layout="constrained")
    for ax, i in zip(axes, idx, strict=True):
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"{class_names[predicted[i]]} ({confidence[i]:.4f})\n/ {class_names[y_true[i]]}",
                     color="red", fontsize=8)
        _no_ticks(ax)
    fig.suptitle("the most confident mistakes: predicted (probability) / true")
    return fig


def _weight_images(columns, title):
    """Columns of a (784, n) array as 28x28 images on one shared symmetric colour scale."""
    n = columns.shape[1]
    images = _as_images(columns.T)
    m = float(np.abs(images).max()) or 1.0  # shared +-m keeps 0 white and units comparable
    fig, axes = _grid(n, ncols=math.ceil(math.sqrt(n)), size=1.2, layout="constrained")
    for ax, image in zip(axes, images, strict=True):
        im = ax.imshow(image, cmap=WEIGHT_CMAP, vmin=-m, vmax=m)
        _no_ticks(ax)
    fig.colorbar(im, ax=list(axes), shrink=0.8)
    fig.suptitle(title)
    return fig


def plot_first_layer_weights(W1, n_units=64, title="First-layer weights"):
    """Incoming weights of the first ``n_units`` hidden units, each as a 28x28 image.

    Any (784, units) array works, e.g. the change of the weights during training, with its own ``title``.
    """
    W1 = np.asarray(W1)
    return _weight_images(W1[:, :n_units], title)


def _class_rows_heatmap(fig, ax, values, row_classes, class_names, xlabel):
    """Heatmap of ``values`` whose rows are labelled by class in contiguous blocks."""
    im = ax.imshow(values, aspect="auto", cmap="viridis", interpolation="nearest")
    starts = np.flatnonzero(np.r_[True, row_classes[1:] != row_classes[:-1]])
    ends = np.r_[starts[1:], len(row_classes)]
    ax.set_yticks((starts + ends - 1) / 2, [class_names[c] for c in row_classes[starts]])
    for s in starts[1:]:
        ax.axhline(s - 0.5, color="white", linewidth=0.8)
    ax.set_xlabel(xlabel)
    fig.colorbar(im, ax=ax, label="activation")


def plot_activation_heatmap(activations, labels, class_names, n_per_class=10):
    """Hidden activations of the first ``n_per_class`` images of each class, grouped by class."""
    activations = np.asarray(activations)
    labels = np.asarray(labels)
    rows = np.concatenate([np.flatnonzero(labels == c)[:n_per_class] for c in range(len(class_names))])
    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    _class_rows_heatmap(fig, ax, activations[rows], labels[rows], class_names, "hidden unit")
    ax.set_ylabel(f"{n_per_class} images of each class")
    ax.set_title(f"Hidden activations, {n_per_class} images per class")
    return fig
