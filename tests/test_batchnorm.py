"""BatchNorm and Augment: batch normalisation's full derivative against finite differences, its two modes and its
running averages on disk; augmentation that moves and mirrors images exactly, from the run's own generator."""

import re

import numpy as np
import pandas as pd
import pytest
from test_modules import numerical_gradient, small_problem

from kernels import moved_images
from modules import MLP, BatchNorm, Dropout


def test_the_layer_s_full_derivative_matches_finite_differences_in_training():
    rng = np.random.default_rng(0)
    layer = BatchNorm(4, dtype=np.float64)
    layer.gamma[:] = rng.normal(size=4)
    layer.beta[:] = rng.normal(size=4)
    bottom, weights = rng.normal(size=(6, 4)) * 3 + 1, rng.normal(size=(6, 4))
    layer.training = True

    def loss():
        return float(np.sum(layer.forward(bottom) * weights))

    loss()
    bottom_diff = layer.backward(weights)
    np.testing.assert_allclose(bottom_diff, numerical_gradient(loss, bottom), rtol=1e-6, atol=1e-8)
    for name in ("gamma", "beta"):
        loss()
        layer.backward(weights)
        np.testing.assert_allclose(getattr(layer, f"grad_{name}"), numerical_gradient(loss, getattr(layer, name)),
                                   rtol=1e-6, atol=1e-8)
    assert abs(bottom_diff.sum(axis=0)).max() < 1e-12  # the mean is taken out: shifting a feature changes nothing


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("L2_lambda", [0.0, 0.1])
def test_the_model_s_gradients_with_batch_norm_match_finite_differences(activation, L2_lambda):
    X, y, _, _ = small_problem(n_train=12)
    model = MLP([2, 5, 4, 3], activation=activation, L2_lambda=L2_lambda, batch_norm=True, dtype=np.float64,
                print_log=False, seed=3)
    rng = np.random.default_rng(1)
    for _, layer in model.numbered_layers():
        for param, _ in layer.trainable().values():
            param += rng.normal(size=param.shape) * 0.3  # gamma and beta away from 1 and 0, biases away from 0
    grads = model.gradients(X, y, training=True)
    params = model.parameters()
    assert {"gamma1", "beta1", "gamma2", "beta2", "running_mean1", "running_var2"} <= set(params)
    for name, grad in grads.items():
        expected = numerical_gradient(lambda: model.objective(X, y, training=True), params[name])
        np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(128, 1024), (100, 7), (1, 5), (6000, 64)])
@pytest.mark.parametrize("training", [True, False])
def test_the_fast_passes_equal_the_reference_formulas_bit_for_bit(dtype, shape, training):
    rng = np.random.default_rng(4)
    h = shape[1]
    bottom = (rng.normal(size=shape) * rng.uniform(0.01, 100, h) + rng.uniform(-50, 50, h)).astype(dtype)
    top_diff = rng.normal(size=shape).astype(dtype)
    gamma, beta = rng.normal(size=h), rng.normal(size=h)
    fast, reference = BatchNorm(h, dtype=dtype), BatchNorm(h, dtype=dtype)
    for layer in (fast, reference):
        layer.gamma[:], layer.beta[:], layer.training = gamma, beta, training
    outputs = {}
    for name, layer, forward, backward in (("fast", fast, fast.forward, fast.backward),
                                           ("reference", reference, reference.reference_forward,
                                            reference.reference_backward)):
        for _ in range(2):  # the second batch starts from the running averages the first moved
            top = forward(bottom)
            bottom_diff = backward(top_diff)
        outputs[name] = (top, bottom_diff, layer.grad_gamma, layer.grad_beta, layer.x_hat, layer.inv_std,
                         layer.running_mean, layer.running_var)
    for got, expected in zip(*outputs.values(), strict=True):
        assert got.dtype == expected.dtype == dtype
        np.testing.assert_array_equal(got, expected)


def test_a_float32_layer_measures_float64_rows_as_its_reference_formula_does():
    rng = np.random.default_rng(5)
    fast, reference = BatchNorm(64), BatchNorm(64)
    gamma, beta, mean, var = rng.normal(size=64), rng.normal(size=64), rng.normal(size=64), rng.uniform(0.1, 10, 64)
    for layer in (fast, reference):
        layer.gamma[:], layer.beta[:], layer.running_mean[:], layer.running_var[:] = gamma, beta, mean, var
    bottom = rng.normal(size=(300, 64)) * 5  # float64 rows: MLP.evaluate measures in MEASURE_DTYPE
    top = fast.forward(bottom)
    assert top.dtype == np.float64
    np.testing.assert_array_equal(top, reference.reference_forward(bottom))


def test_a_run_with_batch_norm_and_dropout_trains_the_same_history_with_the_reference_formulas(monkeypatch):
    X, y, X_val, y_val = small_problem(n_train=200)
    settings = dict(layers=[2, 16, 16, 3], batch_norm=True, dropout=0.1, optimizer="adam", lr=0.01, max_epoch=3,
                    batch_size=32, print_iter=3, print_log=False, seed=5)
    fast = MLP(**settings)
    fast.train(X, y, X_val, y_val)
    monkeypatch.setattr(BatchNorm, "forward", BatchNorm.reference_forward)
    monkeypatch.setattr(BatchNorm, "backward", BatchNorm.reference_backward)
    monkeypatch.setattr(Dropout, "forward", Dropout.reference_forward)
    reference = MLP(**settings)
    reference.train(X, y, X_val, y_val)
    pd.testing.assert_frame_equal(fast.history, reference.history)
    for name, value in reference.parameters().items():
        np.testing.assert_array_equal(fast.parameters()[name], value, err_msg=name)


def test_training_uses_the_batch_statistics_and_evaluation_the_running_averages():
    rng = np.random.default_rng(2)
    layer, bottom = BatchNorm(3, momentum=1.0), rng.normal(size=(50, 3)).astype(np.float32) * 4 + 2
    layer.training = True
    top = layer.forward(bottom)
    np.testing.assert_allclose(top.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(top.std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(layer.running_mean, bottom.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.running_var, bottom.var(axis=0, ddof=1), rtol=1e-5)  # unbiased, as PyTorch's
    layer.training = False
    assert np.abs(layer.forward(bottom[:1]) - top[:1]).max() < 0.05  # one image alone, by the running averages
    layer.training = True
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(layer.forward(bottom[:2]), top[:2], atol=0.05)  # a batch of two: its own


def test_the_running_averages_travel_with_the_weights_and_the_checkpoint_bit_for_bit(tmp_path):
    data = small_problem()
    settings = {"layers": [2, 8, 3], "batch_norm": True, "optimizer": "adam", "lr": 0.01, "max_epoch": 3,
                "batch_size": 10, "print_iter": 4, "print_log": False}
    whole = MLP(**settings)
    whole.train(*data)
    whole.save_param(tmp_path / "bn.npz")
    loaded = MLP.from_file(tmp_path / "bn.npz")
    for name, array in whole.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[name], array, err_msg=name)
    np.testing.assert_array_equal(loaded.predict(data[2]), whole.predict(data[2]))
    assert not np.array_equal(whole.parameters()["running_var1"], np.ones(8))

    first = MLP(**settings)
    first.train(*data, epochs=1, checkpoint_path=tmp_path / "run.npz")
    resumed = MLP.from_checkpoint(tmp_path / "run.npz", print_log=False)
    resumed.train(*data)
    for name, array in whole.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], array, err_msg=name)


def test_weight_decay_leaves_gamma_and_beta_alone():
    model = MLP([2, 4, 3], batch_norm=True, L2_lambda=0.5, print_log=False)
    before = model.get_parameters()
    model.update(0.1)  # every gradient is 0: only the decay could move anything
    after = model.get_parameters()
    assert not np.array_equal(after["W1"], before["W1"])
    for name in ("gamma1", "beta1", "b1"):
        np.testing.assert_array_equal(after[name], before[name])


def reference_move(image, dy, dx, flip):
    """One image moved down by dy and right by dx pixels (zeros enter), then mirrored: a loop over pixels."""
    side = image.shape[0]
    moved = np.zeros_like(image)
    for r in range(side):
        for c in range(side):
            if 0 <= r - dy < side and 0 <= c - dx < side:
                moved[r, c] = image[r - dy, c - dx]
    return moved[:, ::-1] if flip else moved


def test_a_moved_image_is_the_original_moved_and_mirrored():
    rng = np.random.default_rng(4)
    images = rng.random((20, 36)).astype(np.float32)
    moves, flips = rng.integers(-2, 3, size=(20, 2)), rng.random(20) < 0.5
    out = moved_images(images, 6, moves, flips)
    for image, result, (dy, dx), flip in zip(images, out, moves, flips, strict=True):
        np.testing.assert_array_equal(result.reshape(6, 6), reference_move(image.reshape(6, 6), dy, dx, flip))
        inside = image.reshape(6, 6)[max(0, -dy):6 - max(0, dy), max(0, -dx):6 - max(0, dx)]
        assert result.sum() == pytest.approx(inside.sum())  # the pixels inside the frame are all kept
    no_move = np.zeros((20, 2), dtype=int)
    np.testing.assert_array_equal(moved_images(moved_images(images, 6, no_move, flips), 6, no_move, flips), images)


def test_augmentation_draws_from_the_run_s_generator_in_training_only(monkeypatch):
    X = np.random.default_rng(5).random((8, 784)).astype(np.float32)
    first, second = (MLP([784, 10], augment_shift=2, augment_flip=True, seed=7) for _ in range(2))
    batch, _ = first.solver.augmented(X)
    np.testing.assert_array_equal(second.solver.augmented(X)[0], batch)  # the same seed, the same batch
    assert not np.array_equal(batch, X)
    assert not np.array_equal(first.solver.augmented(X)[0], batch)  # the next batch draws anew
    seen = []
    monkeypatch.setattr(first, "forward", lambda X, **kwargs: seen.append(X) or MLP.forward(first, X, **kwargs))
    first.solver.step(X, np.zeros(8, dtype=int))
    assert not np.array_equal(seen[0], X)  # the training step augments
    first.evaluate(X, np.zeros(8, dtype=int))
    assert seen[1] is X or np.array_equal(seen[1], X)  # evaluation does not


def test_a_run_with_augmentation_repeats_itself_and_resumes_exactly(tmp_path):
    X = np.random.default_rng(6).random((60, 16)).astype(np.float32)
    y = (X[:, :8].sum(axis=1) > X[:, 8:].sum(axis=1)).astype(int)
    settings = {"layers": [16, 8, 2], "augment_shift": 1, "augment_flip": True, "batch_norm": True, "max_epoch": 3,
                "batch_size": 10, "print_iter": 3, "print_log": False, "lr": 0.05}
    runs = [MLP(**settings) for _ in range(2)]
    histories = [model.train(X, y, X, y) for model in runs]
    assert histories[0].equals(histories[1])
    MLP(**settings).train(X, y, X, y, epochs=2, checkpoint_path=tmp_path / "run.npz")
    resumed = MLP.from_checkpoint(tmp_path / "run.npz", print_log=False)
    assert resumed.train(X, y, X, y).equals(histories[0])


@pytest.mark.parametrize("settings, message", [
    ({"augment_shift": 28}, "augment_shift must be a whole number of pixels from 0 to 27"),
    ({"augment_shift": -1}, "augment_shift must be"),
    ({"augment_flip": "yes"}, "augment_flip must be True or False"),
    ({"batch_norm": 1}, "batch_norm must be True or False"),
])
def test_bad_augmentation_or_batch_norm_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        MLP([784, 10], **settings)
    with pytest.raises(ValueError, match="no square"):
        MLP([20, 10], augment_flip=True)


# -- degenerate batches and hostile archives ---------------------------------------------------------------------------

def test_a_batch_of_one_row_is_refused_with_batch_norm_at_construction_and_at_train(data):
    X, y, X_val, y_val = data
    one_row = "batch_size must be at least 2 with batch_norm=True, got 1: a batch of one row has no variance"
    with pytest.raises(ValueError, match=one_row):
        MLP([20, 8, 3], batch_norm=True, batch_size=1)
    model = MLP([20, 8, 3], batch_norm=True, batch_size=4, print_log=False)
    model.batch_size = 1  # set after construction: train refuses it too
    with pytest.raises(ValueError, match=one_row):
        model.train(X, y, X_val, y_val)
    with pytest.raises(ValueError, match="training data has 1 row, but batch normalisation needs at least 2 rows"):
        MLP([20, 8, 3], batch_norm=True, max_epoch=1, print_log=False).train(X[:1], y[:1], X_val, y_val)
    plain = MLP([20, 8, 3], batch_size=1, max_epoch=1, print_log=False)  # without batch norm, one row is a batch
    plain.train(X[:1], y[:1], X_val, y_val)
    assert plain.iteration == 1


def steps_taken(model, monkeypatch):
    """The batch sizes the model's solver steps on, and the parameters after each step (copies)."""
    taken, original = [], model.solver.step

    def step(X, y):
        result = original(X, y)
        taken.append((len(X), model.get_parameters()))
        return result

    monkeypatch.setattr(model.solver, "step", step)
    return taken


@pytest.mark.parametrize("lr_schedule", ["step", "cosine"])
def test_a_trailing_batch_of_one_row_is_skipped_with_batch_norm_and_kept_without(data, monkeypatch, lr_schedule):
    X, y, X_val, y_val = data
    settings = dict(layers=[20, 8, 3], batch_size=128, max_epoch=2, print_log=False, lr_schedule=lr_schedule)
    model = MLP(**settings, batch_norm=True)
    taken = steps_taken(model, monkeypatch)
    history = model.train(X[:129], y[:129], X_val, y_val)  # 129 rows: a batch of 128, then one of a single row
    assert [size for size, _ in taken] == [128, 128]  # no step on the single row, in either epoch
    assert list(history["iteration"]) == [2] and model.iteration == 2  # the run's last batch still checks validation
    for name, array in taken[-1][1].items():  # the single row changed nothing: neither parameters nor statistics
        np.testing.assert_array_equal(model.solver.params_reached[name], array, err_msg=name)
    assert model.solver.params_reached["running_var1"].min() > 1e-3  # not collapsed towards 0

    plain = MLP(**settings)
    taken = steps_taken(plain, monkeypatch)
    history = plain.train(X[:129], y[:129], X_val, y_val)
    assert [size for size, _ in taken] == [128, 1, 128, 1] and list(history["iteration"]) == [4]


def test_the_warm_up_s_check_counts_the_batches_a_batch_norm_run_takes(data):
    X, y, X_val, y_val = data
    with pytest.raises(ValueError, match=r"warmup_steps=3 is longer than the whole run \(1 epochs of 2 batches = 2\)"):
        MLP([20, 8, 3], batch_norm=True, batch_size=2, max_epoch=1, warmup_steps=3,
            print_log=False).train(X[:5], y[:5], X_val, y_val)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_extreme_but_finite_inputs_diverge_at_their_first_batch_with_batch_norm_as_without(data, batch_norm):
    X, y, X_val, y_val = data
    X, X_val = X * np.float32(1e19), X_val * np.float32(1e19)  # finite, and they pass the door (a range of its own)
    model = MLP([20, 8, 3], batch_norm=batch_norm, batch_size=50, max_epoch=2, print_log=False)
    initial = model.get_parameters()
    history = model.train(X, y, X_val, y_val)
    assert model.diverged and list(history["iteration"]) == [1] and history["diverged"].tolist() == [True]
    for name, array in model.parameters().items():  # the exploded batch took no step and moved no statistic
        np.testing.assert_array_equal(array, initial[name], err_msg=name)
    model.train(X, y, X_val, y_val, epochs=1)  # goes on from finite parameters: nothing to train, nothing refused
    assert model.iteration == 1


def write_tampered(path, arrays, name, value):
    arrays = dict(arrays)
    arrays[name] = arrays[name].copy()
    arrays[name][0] = value
    np.savez(path, **arrays)


@pytest.mark.parametrize("bad, message", [
    (-0.5, r"parameter running_var1 holds a negative variance \(1 of its 8 values, down to -0.5\)"),
    (np.nan, "parameter running_var1 must hold finite real numbers"),
    (np.inf, "parameter running_var1 must hold finite real numbers"),
])
def test_an_archive_whose_running_variance_is_negative_or_not_finite_is_refused_naming_it(data, tmp_path, bad,
                                                                                         message):
    model = MLP([20, 8, 3], batch_norm=True, max_epoch=1, print_log=False)
    model.train(*data, checkpoint_path=tmp_path / "run.npz")
    model.save_param(tmp_path / "good.npz")
    path = tmp_path / "bad.npz"
    write_tampered(path, np.load(tmp_path / "good.npz"), "running_var1", bad)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: {message}"):
        MLP.from_file(path)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: {message}"):
        MLP([20, 8, 3], batch_norm=True).load_model(path)
    params = dict(model.get_parameters(), running_var1=np.load(path)["running_var1"])
    with pytest.raises(ValueError, match=f"^{message}"):
        MLP([20, 8, 3], batch_norm=True).load_param(params)
    checkpoint = dict(np.load(tmp_path / "run.npz"))
    for group, which in (("params", "reached"), ("best", "best")):
        write_tampered(path, checkpoint, f"{group}.running_var1", bad)
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))} \(the {which} parameters\): {message}"):
            MLP.from_checkpoint(path)
