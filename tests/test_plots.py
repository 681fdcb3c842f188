import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from study import metrics, plots

CLASS_NAMES = tuple(f"class {i}" for i in range(10))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    labels = np.r_[np.arange(10), rng.integers(0, 10, size=40)]
    return rng.random((50, 784)).astype(np.float32), labels


def _history(n=5, offset=0.0):
    it = np.arange(1, n + 1) * 10
    return pd.DataFrame({
        "iteration": it, "epoch": np.ones(n, int), "lr": 0.1,
        "train_loss": 1 / it + offset, "train_acc": 1 - 1 / it, "val_loss": 1.2 / it, "val_acc": 0.9 - 1 / it,
        "diverged": False,
    })


def _images(ax):
    return ax.get_images()


def test_plot_history():
    fig = plots.plot_history(_history(), title="run")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.get_lines()) == 2 and len(acc_ax.get_lines()) == 2
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), _history()["val_loss"])
    assert fig._suptitle.get_text() == "run"


def test_plot_histories_side_by_side():
    fig = plots.plot_histories_side_by_side({"a": _history(), "b": _history(offset=1.0), "c": _history(3)})
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    # Loss panels share their y axis, so the offset run stretches all of them.
    assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim()


def _grid_log():
    rows = []
    for arch in ["784-10", "784-64-10"]:
        for lr in [0.01, 0.1, 1.0]:
            for l2 in [0.0, 1e-4]:
                diverged = lr == 1.0 and arch == "784-64-10"
                rows.append({"layers": arch, "lr": lr, "L2_lambda": l2,
                             "best_val_acc": np.nan if diverged else 0.8 + lr / 10, "best_val_loss": 0.5,
                             "train_time_s": 1.0, "best_iteration": 10, "diverged": diverged})
    return pd.DataFrame(rows)


def test_plot_grid_results():
    fig = plots.plot_grid_results(_grid_log())
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["784-10", "784-64-10"]
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    lines = [ln for ln in fig.axes[1].get_lines() if ln.get_linestyle() == "-"]
    assert len(lines) == 2  # one per L2 strength
    assert all(list(ln.get_xdata()) == [0.01, 0.1] for ln in lines)  # diverged lr=1 left out
    markers = [ln for ln in fig.axes[1].get_lines() if ln.get_marker() == "x" and len(ln.get_xdata())]
    assert sum(len(ln.get_xdata()) for ln in markers) == 2
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["L2 = 0", "L2 = 0.0001", "diverged"]


def test_plot_grid_results_many_architectures_wraps():
    log = pd.concat([_grid_log().assign(layers=f"784-{h}-10") for h in (8, 16, 32, 64)])
    fig = plots.plot_grid_results(log)
    assert len(fig.axes) == 4  # 2 rows of 3 with the two unused cells removed


def test_plot_class_samples_shows_first_of_each_class(images):
    X, y = images
    fig = plots.plot_class_samples(X, y, CLASS_NAMES)
    assert len(fig.axes) == 10
    for c, ax in enumerate(fig.axes):
        assert ax.get_title() == CLASS_NAMES[c]
        np.testing.assert_array_equal(_images(ax)[0].get_array(), X[c].reshape(28, 28))
    assert fig.get_suptitle() == "The first training image of each class"


def test_plot_confusion_matrix_cells_and_labels():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 0, 0])
    names = ("a", "b", "c")
    fig = plots.plot_confusion_matrix(y_true, y_pred, names)
    (ax,) = fig.axes
    np.testing.assert_array_equal(_images(ax)[0].get_array(), metrics.confusion_matrix(y_true, y_pred, 3))
    texts = {(t.get_position()[1], t.get_position()[0]): t.get_text() for t in ax.texts}
    assert texts[(0, 0)] == "2" and texts[(2, 0)] == "1" and texts[(1, 0)] == "0"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(names)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(names)


def test_plot_confusion_matrices_side_by_side():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    predictions = {"before": np.array([0, 1, 1, 0, 2, 2]), "after": np.array([0, 0, 1, 1, 2, 1])}
    fig = plots.plot_confusion_matrices(y_true, predictions, ("a", "b", "c"))
    assert [ax.get_title() for ax in fig.axes] == ["before", "after"]
    for ax, y_pred in zip(fig.axes, predictions.values(), strict=True):
        np.testing.assert_array_equal(_images(ax)[0].get_array(), metrics.confusion_matrix(y_true, y_pred, 3))


def test_plot_confident_mistakes_shows_the_wrong_predictions_of_highest_confidence_first(images):
    X, y = images
    probabilities = np.full((len(y), 10), 0.01)
    probabilities[np.arange(len(y)), y] = 0.91  # right and sure of it
    wrong = [3, 7, 11]
    # (probability of the true class, of the predicted one): by confidence 7, 11, 3; by loss it would be 3, 7, 11.
    for i, (p_true, p_predicted) in zip(wrong, [(0.001, 0.55), (0.015, 0.98), (0.2, 0.75)], strict=True):
        predicted = (y[i] + 1) % 10
        probabilities[i] = (1 - p_true - p_predicted) / 8
        probabilities[i, y[i]], probabilities[i, predicted] = p_true, p_predicted
    fig = plots.plot_confident_mistakes(X, y, probabilities, CLASS_NAMES, n=12)
    assert len(fig.axes) == 3
    assert [ax.get_title().split("\n/ ")[1] for ax in fig.axes] == [CLASS_NAMES[y[i]] for i in (7, 11, 3)]
    assert [ax.get_title().split("(")[1].split(")")[0] for ax in fig.axes] == ["0.9800", "0.7500", "0.5500"]
    assert all(to_rgba(ax.title.get_color()) == to_rgba("red") for ax in fig.axes)
    right = np.eye(10)[y]
    assert plots.plot_confident_mistakes(X, y, right, CLASS_NAMES).axes[0].texts[0].get_text() == \
        "no wrong predictions"


def test_plot_first_layer_weights_symmetric_limits():
    rng = np.random.default_rng(0)
    W1 = rng.normal(size=(784, 40)) + 0.3
    fig = plots.plot_first_layer_weights(W1, n_units=10)
    image_axes = [ax for ax in fig.axes if _images(ax)]
    assert len(image_axes) == 10
    assert len(fig.axes) == 11  # plus the colorbar
    m = np.abs(W1[:, :10]).max()
    for k, ax in enumerate(image_axes):
        im = _images(ax)[0]
        assert im.get_clim() == pytest.approx((-m, m))
        np.testing.assert_allclose(im.get_array(), W1[:, k].reshape(28, 28))
        assert ax.get_xticks().size == 0 and ax.get_yticks().size == 0


def test_plot_first_layer_weights_title():
    W1 = np.random.default_rng(0).normal(size=(784, 4))
    assert plots.plot_first_layer_weights(W1)._suptitle.get_text() == "First-layer weights"
    fig = plots.plot_first_layer_weights(W1, n_units=2, title="Change during training")
    assert fig._suptitle.get_text() == "Change during training"
    assert len([ax for ax in fig.axes if _images(ax)]) == 2


def test_plot_activation_heatmap_groups_rows_by_class():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=60)
    activations = rng.random((60, 16))
    fig = plots.plot_activation_heatmap(activations, labels, ("a", "b", "c"), n_per_class=4)
    assert len(fig.axes) == 2  # heatmap + colorbar
    ax = fig.axes[0]
    shown = _images(ax)[0].get_array()
    expected = np.concatenate([activations[labels == c][:4] for c in range(3)])
    np.testing.assert_allclose(shown, expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    np.testing.assert_allclose(ax.get_yticks(), [1.5, 5.5, 9.5])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("hidden unit", "4 images of each class") and ax.get_title()


def test_save_figure_writes_png_atomically(tmp_path):
    fig = plots.plot_history(_history())
    path = tmp_path / "new" / "folder" / "history.png"
    returned = plots.save_figure(fig, path, dpi=50)
    assert returned == path
    assert path.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in path.parent.iterdir()] == ["history.png"]
    plots.save_figure(fig, path)  # overwriting works too
    assert path.read_bytes().startswith(b"\x89PNG")


def _run(epochs, loss_end, acc_end):
    epoch = np.arange(1, epochs + 1)
    return pd.DataFrame({"iteration": 10 * epoch, "epoch": epoch, "val_acc": acc_end - 0.1 / epoch,
                         "val_loss": 0.3 + (loss_end - 0.3) * epoch / epochs})


def test_validation_curves_span_what_the_curves_cover_and_cut_a_runaway_loss():
    fig = plots.plot_validation_curves({"a": _run(40, 0.30, 0.91), "b": _run(40, 0.32, 0.92),
                                        "runaway": _run(40, 0.90, 0.915)}, title="t")
    ax_acc, ax_loss = fig.axes
    assert [len(line.get_xdata()) for line in ax_acc.get_lines()] == [31, 31, 31]  # from epoch 10
    low, high = ax_acc.get_ylim()
    assert 0.895 < low < 0.9 and 0.9175 < high < 0.92  # no empty band above or below the curves
    assert ax_loss.get_ylim()[1] < 0.4 and "runaway" in ax_loss.get_title()
    assert ax_acc.get_legend() is not None and fig._suptitle.get_text() == "t"
    short = plots.plot_validation_curves({"quick": _run(2, 0.3, 0.8)})  # a run shorter than 10 epochs: its last
    assert len(short.axes[0].get_lines()[0].get_xdata()) == 1


def test_side_by_side_curves_share_an_axis_of_epochs():
    fast, slow = _history(), _history()
    slow["iteration"] = slow["iteration"] * 2  # twice the batches per epoch
    fig = plots.plot_histories_side_by_side({"a": fast, "b": slow}, title="t", epochs=True)
    assert fig.axes[-1].get_xlabel() == "epoch"
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_xdata(), fig.axes[1].get_lines()[0].get_xdata())
