"""The options of section 9's second round: label smoothing, a moving average of the weights, the anchor's step
decays at given epochs, standardised inputs, and a run without a validation set (a final model on every image)."""

import numpy as np
import pytest

from kernels import average_pass
from modules import MLP, Softmax
from tests.test_modules import numerical_gradient, relative_error

ROUND_TWO = {"batch_norm": True, "optimizer": "adam", "lr": 1e-2, "max_epoch": 4, "batch_size": 32, "print_iter": 5,
             "label_smoothing": 0.1, "weight_average": 0.9, "lr_schedule": "milestones", "decay_epochs": [2, 3],
             "decay_factor": 0.25, "input_mean": 0.5, "input_std": 0.3, "augment_shift": 1, "augment_flip": True,
             "print_log": False}


def images(n, seed=0):
    """``n`` random 4x4 'images' in [0, 1] and labels of 3 classes."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 16)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_gradients_of_a_smoothed_loss_match_finite_differences(smoothing):
    rng = np.random.default_rng(3)
    model = MLP([6, 5, 3], label_smoothing=smoothing, dtype=np.float64, seed=2, print_log=False)
    X, y = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    gradients = model.gradients(X, y)
    for name, param in model.parameters().items():
        numeric = numerical_gradient(lambda: model.objective(X, y), param)
        assert relative_error(gradients[name], numeric) < 1e-7, name


def test_smoothed_loss_is_the_cross_entropy_against_the_smoothed_target():
    rng = np.random.default_rng(4)
    softmax, logits, labels = Softmax(), rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    probs = softmax.forward(logits)
    target = np.full((5, 4), 0.2 / 4)
    target[np.arange(5), labels] += 0.8
    expected = -(target * np.log(probs)).sum(axis=1)
    assert np.allclose(softmax.cross_entropy(labels, reduction="none", smoothing=0.2), expected, atol=1e-12)
    assert np.allclose(softmax.backward(labels, smoothing=0.2), (probs - target) / 5, atol=1e-15)


def test_without_smoothing_the_backward_pass_is_unchanged_bit_for_bit():
    rng = np.random.default_rng(5)
    softmax, labels = Softmax(), rng.integers(0, 10, 64)
    probs = softmax.forward(rng.standard_normal((64, 10)).astype(np.float32))
    plain = probs.copy()
    plain[np.arange(64), labels] -= 1
    plain /= 64
    assert np.array_equal(softmax.backward(labels), plain)


def test_milestones_decay_the_rate_after_the_given_epochs():
    X, y = images(96)
    model = MLP([16, 3], lr=0.4, lr_schedule="milestones", decay_epochs=[1, 3], decay_factor=0.5, max_epoch=4,
                batch_size=32, print_iter=1, print_log=False)
    history = model.train(X[:64], y[:64], X[64:], y[64:])
    assert history.groupby("epoch")["lr"].first().tolist() == [0.4, 0.2, 0.2, 0.1]


@pytest.mark.parametrize("bad, message", [
    ({"decay_epochs": [3, 2]}, "increasing"), ({"decay_epochs": [0]}, "increasing"),
    ({"lr_schedule": "milestones"}, "need"), ({"decay_epochs": [2]}, "go with"),
    ({"label_smoothing": 1.0}, "label_smoothing"), ({"weight_average": -0.1}, "weight_average"),
    ({"input_std": 0.0}, "input_std"), ({"input_mean": float("nan")}, "input_mean")])
def test_bad_round_two_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        MLP([16, 3], **bad)


def test_standardised_inputs_are_the_plain_network_on_standardised_data():
    X, _ = images(10)
    model = MLP([16, 8, 3], input_mean=0.5, input_std=0.25, print_log=False)
    plain = MLP([16, 8, 3], print_log=False)
    plain.load_param(model.get_parameters())
    assert np.allclose(model.forward(X), plain.forward((X - 0.5) / 0.25), rtol=1e-6)


def test_average_pass_is_its_formula():
    rng = np.random.default_rng(6)
    average, param = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    expected = average + np.float32(0.1) * (param - average)
    average_pass(average, param, np.float32(0.1))
    assert np.array_equal(average, expected)


def test_weight_average_keeps_the_moving_average_and_measures_it():
    X, y = images(200)
    model = MLP([16, 8, 3], optimizer="adam", lr=1e-2, weight_average=0.8, max_epoch=2, batch_size=40,
                print_iter=2, print_log=False)
    plain = MLP(**dict(model.config(), weight_average=0.0, print_log=False))
    average = plain.get_parameters()
    steps = []
    original_update = plain.update

    def update(lr):  # the plain run's parameters after each step, averaged here by the formula
        original_update(lr)
        steps.append(1)
        for name, param in plain.parameters().items():
            average[name] = average[name] + np.float32(0.2) * (param - average[name])

    plain.update = update
    plain.train(X[:160], y[:160], None, None)
    history = model.train(X[:160], y[:160], X[160:], y[160:])
    assert len(steps) == 8 and {"raw_val_acc", "raw_val_loss"} <= set(history.columns)
    assert np.array_equal(model.solver.params_reached["W1"], plain.get_parameters()["W1"])  # the same raw run
    for name, array in model.solver.averaged.items():
        assert np.allclose(array, average[name], rtol=1e-5, atol=1e-6), name
    measured = MLP(**dict(model.config(), print_log=False))
    measured.load_param(model.solver.averaged)
    assert measured.evaluate(X[160:], y[160:]) == pytest.approx(tuple(history[["val_acc", "val_loss"]].iloc[-1]))


def test_a_run_of_every_round_two_option_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    X, y = images(300)
    whole = MLP([16, 8, 8, 3], **ROUND_TWO)
    expected = whole.train(X[:240], y[:240], X[240:], y[240:])
    first = MLP([16, 8, 8, 3], **ROUND_TWO)
    first.train(X[:240], y[:240], X[240:], y[240:], epochs=2, checkpoint_path=tmp_path / "run.npz")
    resumed = MLP.from_checkpoint(tmp_path / "run.npz", print_log=False)
    history = resumed.train(X[:240], y[:240], X[240:], y[240:])
    assert history.equals(expected)
    for name, array in whole.get_parameters().items():
        assert np.array_equal(resumed.get_parameters()[name], array), name
    assert resumed.history["lr"].nunique() == 3


def test_without_a_validation_set_the_run_keeps_its_last_or_averaged_parameters(tmp_path):
    X, y = images(160)
    for weight_average in (0.0, 0.9):
        model = MLP([16, 8, 3], weight_average=weight_average, max_epoch=2, batch_size=40, print_iter=2,
                    print_log=False)
        history = model.train(X, y, None, None, checkpoint_path=tmp_path / f"{weight_average}.npz")
        assert history["val_acc"].isna().all() and not history["diverged"].any()
        assert np.isnan(model.best_val_acc)
        kept = model.solver.averaged if weight_average else model.solver.params_reached
        for name, array in model.get_parameters().items():
            assert np.array_equal(array, kept[name]), name
        resumed = MLP.from_checkpoint(tmp_path / f"{weight_average}.npz", print_log=False)
        assert resumed.history.equals(history)


def soft(labels, classes, weight, rng):
    """Target distributions: ``1 - weight`` on each label, ``weight`` spread at random over the classes."""
    spread = rng.dirichlet(np.ones(classes), size=len(labels))
    return (1 - weight) * np.eye(classes)[labels] + weight * spread


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_gradients_against_target_distributions_match_finite_differences(smoothing):
    rng = np.random.default_rng(7)
    model = MLP([6, 5, 3], label_smoothing=smoothing, dtype=np.float64, seed=3, print_log=False)
    X, targets = rng.standard_normal((7, 6)), soft(rng.integers(0, 3, 7), 3, 0.5, rng)
    gradients = model.gradients(X, targets)
    for name, param in model.parameters().items():
        numeric = numerical_gradient(lambda: model.objective(X, targets), param)
        assert relative_error(gradients[name], numeric) < 1e-7, name


def test_one_hot_distributions_train_as_their_labels_do():
    X, y = images(200)
    by_labels = MLP([16, 8, 3], max_epoch=2, batch_size=40, print_iter=2, print_log=False)
    by_labels.train(X[:160], y[:160], X[160:], y[160:])
    by_targets = MLP([16, 8, 3], max_epoch=2, batch_size=40, print_iter=2, print_log=False)
    history = by_targets.train(X[:160], np.eye(3)[y[:160]], X[160:], y[160:])
    assert history[["train_acc", "val_acc"]].equals(by_labels.history[["train_acc", "val_acc"]])
    for name, array in by_labels.get_parameters().items():
        np.testing.assert_allclose(by_targets.get_parameters()[name], array, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("targets, message", [
    (np.full((160, 3), 0.5), "add up to 1"), (np.full((160, 3), np.nan), "add up to 1"),
    (np.full((160, 4), 0.25), "shape"), (np.tile([1.5, -0.5, 0.0], (160, 1)), "at least 0")])
def test_target_distributions_that_are_not_probabilities_are_refused(targets, message):
    X, y = images(200)
    with pytest.raises(ValueError, match=message):
        MLP([16, 8, 3], max_epoch=1, print_log=False).train(X[:160], targets, X[160:], y[160:])
