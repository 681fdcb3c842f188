import numpy as np
import pytest

from modules import MLP
from study import metrics, stats


def test_hidden_activations_are_the_relu_outputs():
    model = MLP([784, 6, 5, 10], seed=1)
    X = np.random.default_rng(0).random((7, 784), dtype=np.float32)
    hidden = metrics.hidden_activations(model, X)
    assert list(hidden) == ["hidden layer 1", "hidden layer 2"]
    fc1, fc2 = model.fc_layers[:2]
    h1 = np.maximum(X @ fc1.W + fc1.b, 0)
    np.testing.assert_allclose(hidden["hidden layer 1"], h1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hidden["hidden layer 2"], np.maximum(h1 @ fc2.W + fc2.b, 0), rtol=1e-5, atol=1e-6)


def test_hidden_activations_skip_dropout():
    model = MLP([784, 6, 10], dropout=0.5)
    assert list(metrics.hidden_activations(model, np.zeros((2, 784), dtype=np.float32))) == ["hidden layer 1"]


def test_weight_change_statistics():
    initial = MLP([784, 6, 5, 10], seed=3)
    model = MLP([784, 6, 5, 10], seed=3)
    model.fc_layers[0].W[:, :3] *= 1.5  # half of the units move by 50%, the rest stay
    stats = metrics.weight_change_statistics(model, initial)
    assert list(stats["layer"]) == ["FC1 784x6", "FC2 6x5", "FC3 5x10"]
    W0 = initial.fc_layers[0].W.astype(np.float64)
    expected = 0.5 * np.linalg.norm(W0[:, :3]) / np.linalg.norm(W0)
    assert stats.loc[0, "relative_change"] == pytest.approx(expected, rel=1e-5)
    assert stats.loc[0, "units_changed_under_10pct"] == 0.5
    assert 0 < stats.loc[0, "correlation"] < 1
    assert stats.loc[1:, "relative_change"].tolist() == [0, 0]
    assert stats.loc[1:, "correlation"].tolist() == pytest.approx([1, 1])
    assert stats.loc[1:, "units_changed_under_10pct"].tolist() == [1, 1]


def test_class_means_and_dead_units():
    acts = np.array([[0.0, 1.0, 0.0], [0.0, 3.0, 2.0], [0.0, 0.0, 4.0]])
    labels = np.array([0, 0, 2])
    means = metrics.class_mean_activations(acts, labels, 3)
    np.testing.assert_allclose(means[0], [0, 2, 1])
    assert np.isnan(means[1]).all()
    np.testing.assert_allclose(means[2], [0, 0, 4])
    np.testing.assert_array_equal(metrics.dead_units(acts), [True, False, False])
    stats = metrics.unit_statistics({"h1": acts, "h2": np.ones((3, 2))})
    assert list(stats["layer"]) == ["h1", "h2"]
    assert list(stats["dead_units"]) == [1, 0]
    assert stats["dead_fraction"].tolist() == pytest.approx([1 / 3, 0])
    assert stats["active_per_image"].tolist() == pytest.approx([4 / 9, 1])


def test_similar_and_confused_class_pairs():
    names = ("a", "b", "c")
    means = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    pairs = metrics.similar_class_pairs(means, names, k=2)
    assert list(zip(pairs["class_a"], pairs["class_b"], strict=True)) == [("a", "b"), ("a", "c")]
    assert pairs["cosine_similarity"].iloc[0] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    cm = np.array([[50, 1, 7], [2, 60, 0], [9, 0, 40]])
    confused = metrics.confused_class_pairs(cm, names, k=2)
    assert confused.to_dict("records")[0] == {"class_a": "a", "class_b": "c", "a_as_b": 7, "b_as_a": 9, "errors": 16}
    assert list(confused["errors"]) == [16, 3]


def test_errors_within_groups():
    cm = np.array([[50, 1, 7], [2, 60, 0], [9, 0, 40]])
    result = metrics.errors_within_groups(cm, {"ac": (0, 2), "b": (1,)})
    assert result["ac"] == (16, pytest.approx(16 / 19))
    assert result["b"] == (0, 0.0)


def test_class_activity():
    acts = np.array([[0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    images = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.0]])
    table = metrics.class_activity(acts, images, np.array([0, 0, 1]), ("a", "b", "c"))
    assert list(table["class"]) == ["a", "b"]  # no image of c
    assert table["mean_pixel"].tolist() == pytest.approx([0.5, 0.1])
    assert table["mean_activation"].tolist() == pytest.approx([1.0, 0.0])
    assert table["active_fraction"].tolist() == pytest.approx([0.75, 0.0])


def test_confusion_matrix_and_per_class_accuracy():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 0, 0])
    expected = np.array([[2, 1, 0], [0, 2, 1], [1, 0, 1]])
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, 3), expected)
    np.testing.assert_allclose(metrics.per_class_accuracy(y_true, y_pred, 4)[:3], [2 / 3, 2 / 3, 1 / 2])
    assert np.isnan(metrics.per_class_accuracy(y_true, y_pred, 4)[3])  # class without samples


def test_per_class_accuracy_matches_loop():
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    reference = [np.mean(y_pred[y_true == c] == c) for c in range(10)]
    np.testing.assert_allclose(metrics.per_class_accuracy(y_true, y_pred, 10), reference)
    assert metrics.confusion_matrix(y_true, y_pred, 10).sum() == 500


def test_per_class_table_gives_each_class_accuracy_its_exact_interval():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 1])
    table = metrics.per_class_table(y_true, y_pred, ["a", "b", "c", "d"])
    assert list(table.columns) == ["class", "test images", "accuracy", "ci_low", "ci_high"]
    assert list(table["test images"]) == [4, 2, 1, 0]
    np.testing.assert_allclose(table["accuracy"], [0.75, 0.5, 0.0, np.nan])
    assert (table.loc[0, "ci_low"], table.loc[0, "ci_high"]) == stats.accuracy_ci(3, 4)
    assert (table.loc[2, "ci_low"], table.loc[2, "ci_high"]) == stats.accuracy_ci(0, 1)
    assert np.isnan(table.loc[3, "ci_low"]) and np.isnan(table.loc[3, "ci_high"])  # no image, no interval
