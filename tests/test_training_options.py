"""Dropout, schedules, initialisation, early stopping, optimizers in the model, and runs trained in pieces."""

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from test_modules import numerical_gradient, relative_error, rings, small_problem

from modules import MLP, Dropout
from optimizers import Adam


def test_dropout_is_the_identity_outside_training():
    layer = Dropout(0.5, rng=np.random.default_rng(0))
    x = np.ones((4, 6), dtype=np.float32)
    assert layer.forward(x) is x
    assert layer.backward(x) is x


def test_dropout_zeroes_a_fraction_p_and_keeps_the_mean():
    layer = Dropout(0.3, rng=np.random.default_rng(0))
    layer.training = True
    top = layer.forward(np.ones((400, 500), dtype=np.float32))
    assert top.dtype == np.float32
    assert np.mean(top == 0) == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(top[top != 0], 1 / 0.7, rtol=1e-6)
    assert top.mean() == pytest.approx(1, abs=0.01)


def test_dropout_gradient_with_a_fixed_mask_matches_finite_differences():
    layer = Dropout(0.4)
    layer.training = True
    rng = np.random.default_rng(1)
    x, weights = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))

    def loss():
        layer.rng = np.random.default_rng(123)  # the same mask at every call
        return np.sum(layer.forward(x) * weights)

    loss()
    analytic = layer.backward(weights)
    assert relative_error(analytic, numerical_gradient(loss, x)) < 1e-6
    assert np.any(analytic == 0) and np.any(analytic != 0)


def test_mlp_places_dropout_after_each_hidden_activation_and_only_trains_with_it():
    model = MLP([6, 5, 4, 3], dropout=0.5, seed=0)
    assert [type(layer).__name__ for layer in model.net] == \
        ["FC", "ReLU", "Dropout", "FC", "ReLU", "Dropout", "FC", "Softmax"]
    X, y = np.random.default_rng(2).random((8, 6), dtype=np.float32), np.arange(8) % 3
    before = model.forward(X).copy()
    model.solver.step(X, y)
    model.load_param(MLP([6, 5, 4, 3], seed=0).get_parameters())
    np.testing.assert_array_equal(model.forward(X), before)
    assert model.evaluate(X, y) == model.evaluate(X, y)


def test_mlp_gradients_with_dropout_match_finite_differences():
    model = MLP([6, 5, 4, 3], dropout=0.3, L2_lambda=0.01, dtype=np.float64, seed=1)
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((7, 6)), np.array([0, 1, 2, 0, 1, 2, 0])
    for fc in model.fc_layers:
        fc.b[:] = rng.standard_normal(fc.b.shape)  # a row whose inputs were all dropped would sit on ReLU's kink
    dropouts = [layer for layer in model.net if isinstance(layer, Dropout)]

    def same_masks():
        for layer in dropouts:
            layer.rng = np.random.default_rng(5)  # the same masks at every call

    def objective():
        same_masks()
        return model.objective(X, y, training=True)

    same_masks()
    gradients = model.gradients(X, y, training=True)
    for name, param in model.parameters().items():
        assert relative_error(gradients[name], numerical_gradient(objective, param)) < 1e-6, name


def test_cosine_schedule_with_warmup():
    model = MLP([2, 3], lr=0.4, lr_schedule="cosine", warmup_steps=4)
    total = 24
    lrs = [model.solver.lr_at(i, total) for i in range(total)]
    np.testing.assert_allclose(lrs[:4], [0.1, 0.2, 0.3, 0.4])
    assert lrs[4] == pytest.approx(0.4)
    assert lrs[4 + 10] == pytest.approx(0.2)  # halfway through the 20 batches after the warm-up
    assert all(a > b for a, b in pairwise(lrs[4:]))
    assert lrs[-1] == pytest.approx(0.4 * 0.5 * (1 + np.cos(np.pi * 19 / 20)))


def test_training_uses_the_cosine_schedule_per_batch():
    model = MLP([2, 4, 3], lr=0.2, max_epoch=2, batch_size=20, lr_schedule="cosine", print_log=False, print_iter=1)
    history = model.train(*small_problem())
    expected = [0.2 * 0.5 * (1 + np.cos(np.pi * (i - 1) / 12)) for i in range(1, 13)]
    np.testing.assert_allclose(history["lr"], expected)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_learning_rates_are_python_floats_even_from_numpy_settings(schedule):
    # A float64 scalar would turn every update of the float32 weights into float64 arithmetic.
    model = MLP([2, 3], lr=np.float64(0.4), L2_lambda=np.float64(1e-3), decay_factor=np.float64(0.5),
                lr_schedule=schedule, warmup_steps=2)
    assert type(model.L2_lambda) is float
    assert all(type(model.solver.lr_at(i, 10)) is float for i in range(10))

def test_weight_init_is_selectable():
    he = MLP([1000, 400, 10], activation="tanh", weight_init="he").fc_layers[0].W
    default = MLP([1000, 400, 10], activation="tanh").fc_layers[0].W
    assert he.std() == pytest.approx(np.sqrt(2 / 1000), rel=0.02)
    assert default.std() == pytest.approx(np.sqrt(2 / 1400), rel=0.02)


def test_early_stopping_ends_after_patience_checks_without_improvement():
    X_train, y_train, X_val, y_val = small_problem()
    kwargs = dict(lr=0.5, max_epoch=60, batch_size=10, print_log=False, print_iter=3, seed=0)
    full = MLP([2, 8, 3], **kwargs)
    full_history = full.train(X_train, y_train, X_val, y_val)
    early = MLP([2, 8, 3], patience=3, **kwargs)
    history = early.train(X_train, y_train, X_val, y_val)
    assert early.stopped_early and not full.stopped_early
    assert len(history) < len(full_history)
    after_best = history[history["iteration"] > early.best_iteration]
    assert len(after_best) == 3 and (after_best["val_acc"] <= early.best_val_acc).all()
    pd.testing.assert_frame_equal(history, full_history.iloc[:len(history)])


@pytest.mark.parametrize("settings", [
    {},
    {"optimizer": "adam", "lr": 0.01, "dropout": 0.2, "lr_schedule": "cosine", "L2_lambda": 0.01},
    {"optimizer": "nesterov", "warmup_steps": 5},
])
def test_a_run_trained_in_pieces_equals_one_trained_at_once(settings):
    data = small_problem()
    kwargs = dict(max_epoch=6, batch_size=16, print_log=False, print_iter=5, seed=3, **settings)
    at_once = MLP([2, 8, 3], **kwargs)
    expected = at_once.train(*data)
    in_pieces = MLP([2, 8, 3], **kwargs)
    for epochs in (1, 2, 3):
        history = in_pieces.train(*data, epochs=epochs)
    assert in_pieces.epoch == 6
    pd.testing.assert_frame_equal(history, expected)
    for name, array in at_once.get_parameters().items():
        np.testing.assert_array_equal(in_pieces.get_parameters()[name], array)
    assert in_pieces.best_iteration == at_once.best_iteration


def test_adam_with_dropout_learns_the_rings():
    X_train, y_train = rings(3000, seed=0)
    X_val, y_val = rings(1000, seed=1)
    model = MLP([2, 64, 64, 3], lr=0.01, optimizer="adam", dropout=0.1, L2_lambda=1e-4, lr_schedule="cosine",
                max_epoch=15, batch_size=50, print_log=False, print_iter=20)
    model.train(X_train, y_train, X_val, y_val)
    assert model.evaluate(X_val, y_val)[0] >= 0.97


def test_adamw_decays_weights_but_not_biases_and_keeps_the_gradient_clean():
    X, y = np.random.default_rng(4).random((6, 3), dtype=np.float32), np.array([0, 1, 1, 0, 1, 0])
    decayed = MLP([3, 2], lr=0.1, optimizer="adam", L2_lambda=0.5, seed=0, dtype=np.float64)
    plain = MLP([3, 2], lr=0.1, optimizer="adam", seed=0, dtype=np.float64)
    for model in (decayed, plain):
        model.forward(X)
        model.backward(y)
    np.testing.assert_array_equal(decayed.fc_layers[0].grad_W, plain.fc_layers[0].grad_W)
    W_before = decayed.fc_layers[0].W.copy()
    for model in (decayed, plain):
        model.update(lr=0.1)
    step = plain.fc_layers[0].W - W_before
    np.testing.assert_allclose(decayed.fc_layers[0].W, W_before * (1 - 0.1 * 0.5) + step)
    np.testing.assert_array_equal(decayed.fc_layers[0].b, plain.fc_layers[0].b)


def test_archives_record_the_settings_and_old_archives_still_load(tmp_path):
    model = MLP([4, 6, 3], optimizer=Adam(beta1=0.8), dropout=0.25, lr_schedule="cosine", lr=0.003, seed=7)
    model.save_param(tmp_path / "new.npz")
    loaded = MLP.from_file(tmp_path / "new.npz")
    assert loaded.config() == model.config()
    assert loaded.optimizer.beta1 == 0.8 and loaded.dropout == 0.25

    np.savez(tmp_path / "old.npz", layers=np.array([4, 6, 3]), activation=np.array("relu"),
             **model.get_parameters())
    old = MLP.from_file(tmp_path / "old.npz")
    assert old.optimizer.name == "sgd" and old.dropout == 0
    for name, array in model.get_parameters().items():
        np.testing.assert_array_equal(old.get_parameters()[name], array)
