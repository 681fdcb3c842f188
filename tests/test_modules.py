import pickle

import numpy as np
import pandas as pd
import pytest

import modules
from modules import FC, MLP, ReLU, Sigmoid, Softmax, Tanh

GRAD_TOLERANCE = 1e-6


def numerical_gradient(f, x, eps=1e-6):
    """Centred finite differences of the scalar function f() with respect to the array x, changed in place."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        plus = f()
        x[index] = saved - eps
        minus = f()
        x[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic, numeric):
    return np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-12)


def away_from_zero(rng, shape):
    """Inputs at least 0.05 from 0, where ReLU's kink would spoil a finite difference."""
    x = rng.standard_normal(shape)
    return x + np.sign(x) * 0.05


# -- gradient checks ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer_class", [ReLU, Sigmoid, Tanh])
def test_activation_bottom_diff_matches_finite_differences(layer_class):
    rng = np.random.default_rng(1)
    x, weights = away_from_zero(rng, (4, 6)), rng.standard_normal((4, 6))
    layer = layer_class()
    layer.forward(x)
    analytic = layer.backward(weights)
    numeric = numerical_gradient(lambda: np.sum(layer.forward(x) * weights), x)
    assert relative_error(analytic, numeric) < GRAD_TOLERANCE


def test_fc_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    fc = FC(5, 3, rng=rng, dtype=np.float64)
    fc.b = rng.standard_normal(3)
    x, weights = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))

    def loss():
        return np.sum(fc.forward(x) * weights)

    fc.forward(x)
    bottom_diff = fc.backward(weights)
    assert relative_error(bottom_diff, numerical_gradient(loss, x)) < GRAD_TOLERANCE
    assert relative_error(fc.grad_W, numerical_gradient(loss, fc.W)) < GRAD_TOLERANCE
    assert relative_error(fc.grad_b, numerical_gradient(loss, fc.b)) < GRAD_TOLERANCE


def test_fc_without_propagate_down_still_fills_its_gradients():
    rng = np.random.default_rng(3)
    fc, reference = FC(5, 3, rng=np.random.default_rng(0)), FC(5, 3, rng=np.random.default_rng(0))
    fc.propagate_down = False
    x, top_diff = rng.random((4, 5), dtype=np.float32), rng.random((4, 3), dtype=np.float32)
    fc.forward(x)
    reference.forward(x)
    assert fc.backward(top_diff) is None
    reference.backward(top_diff)
    np.testing.assert_array_equal(fc.grad_W, reference.grad_W)
    np.testing.assert_array_equal(fc.grad_b, reference.grad_b)


def test_softmax_backward_is_the_gradient_of_mean_cross_entropy():
    rng = np.random.default_rng(4)
    logits, labels = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    softmax = Softmax()
    softmax.forward(logits)
    analytic = softmax.backward(labels)

    def loss():
        softmax.forward(logits)
        return softmax.cross_entropy(labels)

    assert relative_error(analytic, numerical_gradient(loss, logits)) < GRAD_TOLERANCE


def step_direction(model, y):
    """After a forward pass: the gradient that one SGD step follows, ``W_before - W_after`` at learning rate 1, for
    every parameter; the parameters are put back afterwards."""
    model.backward(y)
    before = model.get_parameters()
    model.update(lr=1.0)
    after = model.get_parameters()
    model.load_param(before)
    return {name: before[name] - after[name] for name in before}


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("L2_lambda", [0.0, 0.1])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])  # with Adam, L2_lambda is a decay outside the loss
def test_gradients_are_the_gradient_of_the_objective(activation, L2_lambda, optimizer):
    rng = np.random.default_rng(5)
    model = MLP([6, 5, 4, 3], activation=activation, L2_lambda=L2_lambda, optimizer=optimizer, dtype=np.float64,
                seed=1)
    for fc in model.fc_layers:
        fc.b[:] = rng.standard_normal(fc.b.shape)
    X, y = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    gradients = model.gradients(X, y)
    assert list(gradients) == list(model.parameters())
    for name, param in model.parameters().items():
        numeric = numerical_gradient(lambda: model.objective(X, y), param)
        assert relative_error(gradients[name], numeric) < GRAD_TOLERANCE, name


def test_gradients_with_l2_are_the_step_that_sgd_takes():
    rng = np.random.default_rng(8)
    model = MLP([6, 5, 3], L2_lambda=0.1, dtype=np.float64, seed=1)
    X, y = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    gradients = model.gradients(X, y)
    for name, direction in step_direction(model, y).items():
        np.testing.assert_allclose(direction, gradients[name], rtol=1e-12, atol=1e-15)


def test_l2_adds_to_the_weight_step_but_not_the_bias_step_and_backward_is_the_cross_entropy_gradient():
    X, y = np.random.default_rng(6).standard_normal((4, 3)), np.array([0, 1, 1, 0])
    plain, regularised = MLP([3, 4, 2], seed=2, dtype=np.float64), MLP([3, 4, 2], seed=2, L2_lambda=0.5,
                                                                      dtype=np.float64)
    for model in (plain, regularised):
        model.forward(X)
        model.backward(y)
    for fc_plain, fc_reg in zip(plain.fc_layers, regularised.fc_layers, strict=True):
        np.testing.assert_array_equal(fc_reg.grad_W, fc_plain.grad_W)
    directions = [step_direction(model, y) for model in (plain, regularised)]
    for name, W in regularised.get_parameters().items():
        expected = 0.5 * W if name.startswith("W") else 0
        np.testing.assert_allclose(directions[1][name] - directions[0][name], expected, atol=1e-12)


# -- softmax stability --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_finite_at_extreme_logits(dtype):
    logits = np.array([[1e4, -1e4, 0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    probs = Softmax().forward(logits)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(probs[2], [0.5, 0.5, 0], atol=1e-7)


def test_cross_entropy_is_finite_where_the_probability_is_zero():
    softmax = Softmax()
    probs = softmax.forward(np.array([[0.0, -1e4], [5.0, 0.0]], dtype=np.float32))
    assert probs[0, 1] == 0
    losses = softmax.cross_entropy(np.array([1, 0]), reduction="none")
    assert np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses[0], 1e4, rtol=1e-6)
    np.testing.assert_allclose(losses[1], np.log1p(np.exp(-5.0)), rtol=1e-5)


# -- the model ----------------------------------------------------------------------------------------------------

def test_init_model_builds_fc_activation_pairs_then_softmax():
    model = MLP([8, 6, 4, 3], activation="tanh")
    assert [type(layer) for layer in model.net] == [FC, Tanh, FC, Tanh, FC, Softmax]
    assert [fc.W.shape for fc in model.fc_layers] == [(8, 6), (6, 4), (4, 3)]
    assert all(fc.W.dtype == np.float32 for fc in model.fc_layers)
    assert not model.fc_layers[0].propagate_down and model.fc_layers[1].propagate_down
    assert model.summary()["parameters"].sum() == 8 * 6 + 6 + 6 * 4 + 4 + 4 * 3 + 3


def test_he_and_xavier_initialisation_have_their_spread():
    he = FC(1000, 500, rng=np.random.default_rng(0))
    xavier = FC(1000, 500, rng=np.random.default_rng(0), weight_init="xavier")
    assert he.W.std() == pytest.approx(np.sqrt(2 / 1000), rel=0.01)
    assert xavier.W.std() == pytest.approx(np.sqrt(2 / 1500), rel=0.01)
    with pytest.raises(ValueError, match="weight_init"):
        FC(3, 2, weight_init="uniform")


@pytest.mark.parametrize("bad_args, message", [
    (([784],), "at least two"),
    (([784, 0, 10],), "positive integer"),
    (([784, 10],), "activation"),
])
def test_bad_model_arguments_are_refused(bad_args, message):
    with pytest.raises(ValueError, match=message):
        MLP(*bad_args, activation="relu" if message != "activation" else "swish")


def test_forward_can_return_every_layers_output():
    model = MLP([5, 4, 3])
    X = np.random.default_rng(0).random((6, 5), dtype=np.float32)
    probs, activations = model.forward(X, save_activations=True)
    assert [a.shape for a in activations] == [(6, 4), (6, 4), (6, 3), (6, 3)]
    assert np.all(activations[1] >= 0)
    assert activations[-1] is probs


def test_evaluate_in_chunks_matches_one_pass(monkeypatch):
    rng = np.random.default_rng(7)
    model = MLP([5, 8, 3], seed=3)
    X, y = rng.random((50, 5), dtype=np.float32), rng.integers(0, 3, 50)
    probs = model.forward(X).astype(np.float64)
    expected_acc = np.mean(probs.argmax(axis=1) == y)
    expected_loss = -np.mean(np.log(probs[np.arange(50), y]))
    monkeypatch.setattr(modules, "EVAL_CHUNK_ROWS", 7)
    acc, loss = model.evaluate(X, y)
    assert acc == expected_acc
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_array_equal(model.predict(X), probs.argmax(axis=1))


def test_update_is_one_sgd_step():
    model = MLP([3, 2], lr=0.5)
    X, y = np.ones((2, 3), dtype=np.float32), np.array([0, 1])
    before = model.get_parameters()
    model.forward(X)
    model.backward(y)
    model.update(lr=0.5)
    after = model.get_parameters()
    fc = model.fc_layers[0]
    np.testing.assert_allclose(after["W1"], before["W1"] - 0.5 * fc.grad_W, rtol=1e-6)
    np.testing.assert_allclose(after["b1"], before["b1"] - 0.5 * fc.grad_b, rtol=1e-6)


# -- training -----------------------------------------------------------------------------------------------------

def rings(n, seed):
    """Three concentric rings in the plane, one class each: no straight line separates them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    radius = 1.0 + 1.5 * labels + rng.uniform(-0.4, 0.4, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) / 4
    return points.astype(np.float32), labels


def test_training_solves_concentric_rings_that_a_linear_model_cannot():
    X_train, y_train = rings(3000, seed=0)
    X_val, y_val = rings(1000, seed=1)
    model = MLP([2, 32, 32, 3], lr=0.3, max_epoch=30, batch_size=50, print_log=False, print_iter=20, seed=0)
    model.train(X_train, y_train, X_val, y_val)
    linear = MLP([2, 3], lr=0.3, max_epoch=30, batch_size=50, print_log=False, print_iter=20, seed=0)
    linear.train(X_train, y_train, X_val, y_val)
    assert model.evaluate(X_val, y_val)[0] >= 0.97
    assert linear.evaluate(X_val, y_val)[0] < 0.7


def small_problem(n_train=120, n_val=40):
    X, y = rings(n_train + n_val, seed=4)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def test_step_decay_gives_the_specified_learning_rates():
    model = MLP([2, 4, 3], lr=0.2, max_epoch=3, batch_size=20, decay_factor=0.5, decay_steps=4,
                print_log=False, print_iter=1)
    history = model.train(*small_problem())
    assert list(history["iteration"]) == list(range(1, 19))
    assert list(history["epoch"]) == [1] * 6 + [2] * 6 + [3] * 6
    expected = [0.2 * 0.5 ** ((i - 1) // 4) for i in range(1, 19)]
    assert list(history["lr"]) == expected


def test_identical_seeds_give_identical_runs_and_other_seeds_do_not():
    data = small_problem()
    runs = []
    for seed in (0, 0, 1):
        model = MLP([2, 8, 3], lr=0.1, max_epoch=3, batch_size=10, print_log=False, print_iter=5, seed=seed)
        history = model.train(*data)
        runs.append((history, model.get_parameters()))
    pd.testing.assert_frame_equal(runs[0][0], runs[1][0])
    for name in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][name], runs[1][1][name])
    assert not np.array_equal(runs[0][1]["W1"], runs[2][1]["W1"])


def test_training_ends_with_the_best_validation_parameters(tmp_path):
    X_train, y_train, X_val, y_val = small_problem()
    model = MLP([2, 8, 3], lr=0.5, max_epoch=5, batch_size=10, print_log=False, print_iter=3, seed=0)
    history = model.train(X_train, y_train, X_val, y_val, save_path=tmp_path / "best.npz")
    best_row = history.loc[history["iteration"] == model.best_iteration].iloc[0]
    assert best_row["val_acc"] == history["val_acc"].max() == model.best_val_acc
    assert model.evaluate(X_val, y_val) == (best_row["val_acc"], pytest.approx(best_row["val_loss"], rel=1e-6))
    saved = MLP.from_file(tmp_path / "best.npz")
    for name, array in model.get_parameters().items():
        np.testing.assert_array_equal(saved.get_parameters()[name], array)


def test_a_diverging_run_is_flagged_not_raised(capsys):
    X_train, y_train, X_val, y_val = small_problem()
    X_train = X_train * 50
    model = MLP([2, 16, 3], lr=1e3, max_epoch=20, batch_size=10, print_iter=2, seed=0)
    history = model.train(X_train, y_train, X_val, y_val)
    assert model.diverged
    assert history["diverged"].iloc[-1] and not history["diverged"].iloc[:-1].any()
    assert len(history) < 20 * 12 / 2
    assert "diverged" in capsys.readouterr().out
    assert all(np.all(np.isfinite(array)) for array in model.get_parameters().values())


def test_bad_training_data_gets_a_clear_error():
    X_train, y_train, X_val, y_val = small_problem()
    model = MLP([2, 4, 3], print_log=False)
    with pytest.raises(ValueError, match=r"training data must have shape \(N, 2\)"):
        model.train(X_train[:, :1], y_train, X_val, y_val)
    with pytest.raises(ValueError, match=r"validation labels must be classes in \[0, 3\)"):
        model.train(X_train, y_train, X_val, y_val + 3)


# -- parameters on disk -------------------------------------------------------------------------------------------

def test_save_and_load_round_trip_is_bit_exact(tmp_path):
    model = MLP([6, 5, 4], activation="tanh", seed=3)
    for fc in model.fc_layers:
        fc.b += np.float32(0.1)
    model.save_param(tmp_path / "model.npz")
    fresh = MLP([6, 5, 4], activation="tanh", seed=99)
    fresh.load_model(tmp_path / "model.npz")
    for name, array in model.get_parameters().items():
        loaded = fresh.get_parameters()[name]
        assert loaded.dtype == array.dtype
        np.testing.assert_array_equal(loaded, array)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_a_different_architecture_is_refused_naming_both(tmp_path):
    MLP([6, 5, 4]).save_param(tmp_path / "model.npz")
    with pytest.raises(ValueError, match=r"MLP\(\[6, 5, 4\].*MLP\(\[6, 7, 4\]"):
        MLP([6, 7, 4]).load_model(tmp_path / "model.npz")
    with pytest.raises(ValueError, match="'sigmoid'"):
        MLP([6, 5, 4], activation="sigmoid").load_model(tmp_path / "model.npz")


def test_load_param_names_the_first_misfit():
    model = MLP([4, 3, 2])
    params = model.get_parameters()
    with pytest.raises(ValueError, match=r"W2 has shape \(3, 5\)"):
        model.load_param(dict(params, W2=np.zeros((3, 5))))
    with pytest.raises(ValueError, match="b1 is missing"):
        model.load_param({k: v for k, v in params.items() if k != "b1"})


class Alarm:
    """Unpickling this would create the file ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickled_files_are_refused_and_nothing_runs(tmp_path):
    alarm = tmp_path / "alarm"
    with open(tmp_path / "pickle.npz", "wb") as f:
        pickle.dump(Alarm(alarm), f)
    np.savez(tmp_path / "objects.npz", layers=np.array([4, 2]), activation=np.array("relu"),
             W1=np.array([Alarm(alarm)], dtype=object), b1=np.zeros(2))
    for name in ("pickle.npz", "objects.npz"):
        with pytest.raises(ValueError, match="not a readable model archive"):
            MLP([4, 2]).load_model(tmp_path / name)
    assert not alarm.exists()


def test_a_truncated_archive_is_refused(tmp_path):
    MLP([40, 30, 10]).save_param(tmp_path / "model.npz")
    data = (tmp_path / "model.npz").read_bytes()
    (tmp_path / "model.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable model archive"):
        MLP([40, 30, 10]).load_model(tmp_path / "model.npz")


def test_a_failed_write_keeps_the_previous_archive(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    model = MLP([4, 3, 2], seed=0)
    model.save_param(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        MLP([4, 3, 2], seed=1).save_param(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


# -- the real data ------------------------------------------------------------------------------------------------

@pytest.mark.real_data
def test_one_epoch_on_fashion_mnist_reaches_83_percent(fashion_mnist):
    X_train, y_train, X_val, y_val, _, _ = fashion_mnist
    model = MLP([784, 256, 128, 10], lr=0.1, max_epoch=1, print_log=False, seed=0)
    model.train(X_train, y_train, X_val, y_val)
    assert model.best_val_acc >= 0.83


def test_a_trained_model_does_not_carry_its_last_batch():
    model = MLP([2, 8, 3], max_epoch=1, batch_size=10, print_log=False, print_iter=4)
    model.train(*small_problem())
    assert model.fc_layers[0].bottom is None and model.softmax.probs is None
    assert len(pickle.dumps(model)) < 20_000
