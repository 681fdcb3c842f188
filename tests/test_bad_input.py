"""Every bad input gets a clear error at the door: the constructor, train, evaluate, predict and the archives."""

import numpy as np
import pytest
from test_modules import small_problem

from modules import MLP


@pytest.mark.parametrize("setting, value, message", [
    ("layers", [784], "layers must list at least two positive integer sizes"),
    ("layers", [784, 2.5, 10], "layers must list at least two positive integer sizes"),
    ("layers", "784-10", "layers must list"),
    ("lr", 0.0, "lr must be a positive number, got 0.0"),
    ("lr", float("nan"), "lr must be a positive number"),
    ("lr", "0.1", "lr must be a positive number"),
    ("L2_lambda", -1e-3, "L2_lambda must be a number of at least 0"),
    ("L2_lambda", float("inf"), "L2_lambda must be a number of at least 0"),
    ("decay_factor", 1.5, r"decay_factor must be a number in \(0, 1\]"),
    ("dropout", 1.0, r"dropout must be a probability in \[0, 1\)"),
    ("max_epoch", 0, "max_epoch must be an integer of at least 1, got 0"),
    ("max_epoch", 2.5, "max_epoch must be an integer of at least 1, got 2.5"),
    ("batch_size", True, "batch_size must be an integer of at least 1"),
    ("decay_steps", -5, "decay_steps must be an integer of at least 1"),
    ("print_iter", 0, "print_iter must be an integer of at least 1"),
    ("warmup_steps", -1, "warmup_steps must be an integer of at least 0"),
    ("seed", -1, "seed must be an integer of at least 0"),
    ("patience", 0, "patience must be None .* or a positive integer"),
    ("lr_schedule", "linear", "unknown lr_schedule 'linear': choose one of"),
])
def test_settings_out_of_range_are_refused_naming_the_argument(setting, value, message):
    settings = {"layers": [4, 3], setting: value}
    with pytest.raises(ValueError, match=message):
        MLP(**settings)


def test_numpy_integers_and_floats_are_good_settings():
    model = MLP(np.array([4, 3, 2]), lr=np.float32(0.1), max_epoch=np.int64(2), seed=np.int32(1))
    assert model.layers == [4, 3, 2] and model.max_epoch == 2


def test_non_finite_images_are_refused_not_reported_as_a_diverged_run():
    X_train, y_train, X_val, y_val = small_problem()
    X_train = X_train.copy()
    X_train[5, 1] = np.nan
    model = MLP([2, 4, 3], print_log=False)
    with pytest.raises(ValueError, match=r"training data holds NaN or infinite values \(in 1 places\)"):
        model.train(X_train, y_train, X_val, y_val)
    X_val = X_val.copy()
    X_val[0, 0] = np.inf
    with pytest.raises(ValueError, match="evaluation data holds NaN or infinite values"):
        model.evaluate(X_val, y_val)
    with pytest.raises(ValueError, match="prediction data holds NaN or infinite values"):
        model.predict(X_val)


def test_empty_sets_and_misfit_shapes_are_refused():
    X_train, y_train, X_val, y_val = small_problem()
    model = MLP([2, 4, 3], print_log=False)
    with pytest.raises(ValueError, match=r"validation data must have shape \(N, 2\) with N > 0, got \(0, 2\)"):
        model.train(X_train, y_train, X_val[:0], y_val[:0])
    with pytest.raises(ValueError, match="training labels must be integers of shape"):
        model.train(X_train, y_train[:-1], X_val, y_val)
    with pytest.raises(ValueError, match="training labels must be integers"):
        model.train(X_train, y_train.astype(float), X_val, y_val)
    with pytest.raises(ValueError, match="prediction data must have shape"):
        model.predict(X_val[:, :1])
    with pytest.raises(ValueError, match="evaluation data must be real numbers"):
        model.evaluate(np.array([["a", "b"]]), np.array([0]))


def test_evaluate_refuses_labels_outside_the_classes_instead_of_wrapping_around():
    X, y = small_problem()[2:]
    model = MLP([2, 4, 3])
    with pytest.raises(ValueError, match=r"evaluation labels must be classes in \[0, 3\), got labels from -1"):
        model.evaluate(X, np.where(y == 0, -1, y))
    with pytest.raises(ValueError, match=r"evaluation labels must be classes in \[0, 3\), got labels from 1 to 3"):
        model.evaluate(X, np.where(y == 0, 3, y))


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1j])
def test_non_finite_or_complex_weights_are_refused(tmp_path, bad):
    model = MLP([4, 3])
    params = model.get_parameters()
    params["W1"] = params["W1"] + bad if bad != 1j else params["W1"] * (1 + 1j)
    np.savez(tmp_path / "bad.npz", layers=np.array([4, 3]), activation=np.array("relu"), **params)
    with pytest.raises(ValueError, match="parameter W1 must hold finite real numbers"):
        MLP([4, 3]).load_model(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="parameter W1 must hold finite real numbers"):
        MLP.from_file(tmp_path / "bad.npz")


def test_a_plain_npy_file_is_not_a_model_archive(tmp_path):
    np.save(tmp_path / "weights.npy", np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"not a readable model archive .*single array.*MLP\.save_param"):
        MLP.from_file(tmp_path / "weights.npy")
