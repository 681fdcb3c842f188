import numpy as np
import pytest
from test_modules import numerical_gradient, relative_error

import conv
from conv import CNN, Conv2D, Flatten, MaxPool

GRAD_TOLERANCE = 1e-6


def direct_convolution(images, W, b):
    """The definition, one window offset at a time: ``top[n, h, w] = sum over i, j of padded[n, h + i, w + j] @
    W[i, j] + b``, with no window copy."""
    k = W.shape[0]
    n, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    top = np.zeros((n, height, width, W.shape[3])) + b
    for i in range(k):
        for j in range(k):
            top += padded[:, i:i + height, j:j + width, :] @ W[i, j]
    return top


def conv_layer(rng, c=3, f=4, k=3, dtype=np.float64, propagate_down=True):
    layer = Conv2D(c, f, kernel_size=k, rng=rng, dtype=dtype, propagate_down=propagate_down)
    layer.b[...] = rng.standard_normal(f)
    return layer


@pytest.mark.parametrize("k", [1, 3, 5])
def test_conv_forward_is_the_definition(k):
    rng = np.random.default_rng(0)
    layer, x = conv_layer(rng, k=k), rng.standard_normal((2, 5, 6, 3))
    expected = direct_convolution(x, layer.W, layer.b)
    np.testing.assert_allclose(layer.reference_forward(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("way", ["reference", "fast"])
def test_conv_gradients_match_finite_differences(way):
    rng = np.random.default_rng(1)
    layer, x = conv_layer(rng), rng.standard_normal((2, 5, 4, 3))
    forward, backward = ((layer.reference_forward, layer.reference_backward) if way == "reference" else
                         (layer.forward, layer.backward))
    weights = rng.standard_normal((2, 5, 4, 4))

    def loss():
        return np.sum(forward(x) * weights)

    forward(x)
    bottom_diff = backward(weights)
    assert relative_error(bottom_diff, numerical_gradient(loss, x)) < GRAD_TOLERANCE
    assert relative_error(layer.grad_W, numerical_gradient(loss, layer.W)) < GRAD_TOLERANCE
    assert relative_error(layer.grad_b, numerical_gradient(loss, layer.b)) < GRAD_TOLERANCE


def test_conv_first_layer_skips_its_bottom_diff():
    rng = np.random.default_rng(2)
    layer = conv_layer(rng, c=1, propagate_down=False)
    layer.forward(rng.standard_normal((2, 4, 4, 1)))
    assert layer.backward(rng.standard_normal((2, 4, 4, 4))) is None
    assert np.any(layer.grad_W != 0)


def test_conv_refuses_an_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        Conv2D(1, 2, kernel_size=2)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_window_copy_equals_the_reference_im2col(k, dtype):
    """Bit for bit, into a reused buffer full of NaN (every value, the padding's zeros too, is written), and from a
    view that is not contiguous."""
    x = np.random.default_rng(3).standard_normal((3, 7, 5, 4)).astype(dtype)
    stale = np.full((3 * 7 * 5, k * k * 4), np.nan, dtype=dtype)
    np.testing.assert_array_equal(conv.im2col(x, k, reuse=stale), conv.reference_im2col(x, k))
    np.testing.assert_array_equal(conv.im2col(x[:, ::-1], k), conv.reference_im2col(x[:, ::-1], k))


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), y> = <x, col2im(y)> for every x and y: the scatter sends each value back where the copy took it."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((60, 27))
    assert np.isclose(np.sum(conv.reference_im2col(x, 3) * y), np.sum(x * conv.reference_col2im(y, x.shape, 3)))


def test_conv_fast_path_matches_the_reference_in_float32():
    """The same product forward, and its gradients, bit for bit; the bottom diff by another route (the mirrored
    filters' convolution, not the scatter), equal to rounding."""
    rng = np.random.default_rng(5)
    x, top_diff = (rng.standard_normal(shape, dtype=np.float32) for shape in [(4, 8, 8, 16), (4, 8, 8, 8)])
    fast, reference = conv_layer(rng, 16, 8, dtype=np.float32), conv_layer(rng, 16, 8, dtype=np.float32)
    reference.W[...], reference.b[...] = fast.W, fast.b
    np.testing.assert_array_equal(fast.forward(x), reference.reference_forward(x))
    fast_diff, reference_diff = fast.backward(top_diff), reference.reference_backward(top_diff)
    np.testing.assert_array_equal(fast.grad_W, reference.grad_W)
    np.testing.assert_array_equal(fast.grad_b, reference.grad_b)
    np.testing.assert_allclose(fast_diff, reference_diff, rtol=1e-4, atol=1e-4)
    assert fast_diff.dtype == np.float32


def test_max_pool_forward_is_the_window_maximum():
    x = np.random.default_rng(6).standard_normal((2, 4, 6, 3))
    expected = np.max([x[:, i::2, j::2] for i in (0, 1) for j in (0, 1)], axis=0)
    for forward in (MaxPool().reference_forward, MaxPool().forward):
        np.testing.assert_array_equal(forward(x), expected)


@pytest.mark.parametrize("way", ["reference", "fast"])
def test_max_pool_gradient_matches_finite_differences(way):
    rng = np.random.default_rng(7)
    x, weights = rng.permutation(192).reshape(2, 4, 4, 6) / 10.0, rng.standard_normal((2, 2, 2, 6))  # no ties
    pool = MaxPool()
    forward, backward = (pool.reference_forward, pool.reference_backward) if way == "reference" else \
        (pool.forward, pool.backward)
    forward(x)
    analytic = backward(weights)
    assert relative_error(analytic, numerical_gradient(lambda: np.sum(forward(x) * weights), x)) < GRAD_TOLERANCE


def test_max_pool_fast_path_matches_the_reference_with_ties():
    """Windows with equal values (a ReLU's zeros, say) send the gradient to the first, both ways."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 3, size=(3, 6, 4, 5)).astype(np.float32)
    top_diff = rng.standard_normal((3, 3, 2, 5), dtype=np.float32)
    fast, reference = MaxPool(), MaxPool()
    np.testing.assert_array_equal(fast.forward(x), reference.reference_forward(x))
    np.testing.assert_array_equal(fast.argmax, reference.argmax)
    bottom_diff = fast.backward(top_diff)
    np.testing.assert_array_equal(bottom_diff, reference.reference_backward(top_diff))
    assert np.count_nonzero(bottom_diff) == top_diff.size  # one input of each window


def test_max_pool_refuses_an_odd_size():
    with pytest.raises(ValueError, match="even"):
        MaxPool().forward(np.zeros((1, 5, 4, 2), dtype=np.float32))


def test_flatten_round_trip():
    x = np.arange(48.0).reshape(2, 2, 4, 3)
    flatten = Flatten()
    np.testing.assert_array_equal(flatten.forward(x), x.reshape(2, 24))
    np.testing.assert_array_equal(flatten.backward(x.reshape(2, 24) + 1), x + 1)


def tiny_cnn(dtype=np.float64, seed=0, classes=3, **settings):
    return CNN(**dict(dict(channels=(2, 3), layers=[64, 5, classes], batch_norm=True, seed=seed, dtype=dtype,
                           print_log=False), **settings))


def test_cnn_gradients_match_finite_differences():
    """Every parameter of the whole network, batch normalisation in training included, with smoothed labels,
    through ``MLP.gradients`` (the head's L2 term included)."""
    rng = np.random.default_rng(9)
    model = tiny_cnn(label_smoothing=0.1, L2_lambda=0.01, optimizer="sgd")
    X, y = rng.standard_normal((6, 64)), rng.integers(0, 3, 6)
    analytic = model.gradients(X, y, training=True)
    params = model.parameters()
    for name, grad in analytic.items():  # absolute: the FC bias before batch normalisation has no gradient
        numeric = numerical_gradient(lambda: model.objective(X, y, training=True), params[name])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_cnn_names_its_parameters_and_builds_its_layers():
    model = tiny_cnn()
    assert [repr(layer) for layer in model.net if isinstance(layer, Conv2D)] == [
        "Conv2D(1, 2, 3x3)", "Conv2D(2, 2, 3x3)", "Conv2D(2, 3, 3x3)", "Conv2D(3, 3, 3x3)"]
    assert model.parameters()["W1"].shape == (3 * 2 * 2, 5)  # 8 x 8 pooled twice, 3 channels
    assert {"conv_W4", "gamma5", "running_var5", "W2", "b2"} <= set(model.parameters())
    assert "conv_b1" not in model.parameters()  # batch normalisation follows each convolution
    assert not model.net[0].propagate_down and model.net[3].propagate_down
    with pytest.raises(ValueError, match="halves once per stage"):
        CNN(layers=[36, 5, 3], channels=(2, 3))


def learnable_images(rng, n, side=8):
    """Two classes a convolution tells apart at once: a bright horizontal bar, or a vertical one, anywhere."""
    y = rng.integers(0, 2, n)
    images = rng.normal(0, 0.1, (n, side, side))
    where = rng.integers(0, side, n)
    images[y == 0, where[y == 0], :] += 1
    images[y == 1, :, where[y == 1]] += 1
    return np.clip(images.reshape(n, side * side), 0, None).astype(np.float32), y


def test_cnn_trains_with_the_solver_and_is_repeatable():
    rng = np.random.default_rng(10)
    X, y = learnable_images(rng, 256)
    X_val, y_val = learnable_images(rng, 64)
    settings = dict(classes=2, dtype=np.float32, optimizer="adam", lr=3e-2, max_epoch=4, batch_size=32, print_iter=8)
    models = [tiny_cnn(**settings), tiny_cnn(**settings), tiny_cnn(seed=1, **settings)]
    histories = [model.train(X, y, X_val, y_val) for model in models]
    assert histories[0].equals(histories[1])  # one seed, one run
    assert not histories[0].equals(histories[2])
    assert models[0].best_val_acc > 0.9 and models[0].evaluate(X_val, y_val)[0] == models[0].best_val_acc


def test_cnn_archive_and_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(11)
    X, y = learnable_images(rng, 64)
    model = tiny_cnn(np.float32, classes=2, dropout=0.2, max_epoch=2, batch_size=16)
    model.train(X, y, None, None, epochs=1, checkpoint_path=tmp_path / "run.npz")
    model.save_param(tmp_path / "cnn.npz")
    loaded = CNN.from_file(tmp_path / "cnn.npz")
    assert loaded.config() == model.config() and loaded.config()["channels"] == [2, 3]
    np.testing.assert_array_equal(loaded.probabilities(X), model.probabilities(X))
    resumed = CNN.from_checkpoint(tmp_path / "run.npz", print_log=False)
    resumed.train(X, y, None, None)
    model.train(X, y, None, None)
    np.testing.assert_array_equal(resumed.probabilities(X), model.probabilities(X))  # resumed bit for bit
    with pytest.raises(ValueError, match="conv_W1"):
        tiny_cnn(np.float32, classes=2, channels=(4, 3)).load_param(loaded.parameters())


def test_cnn_probabilities_do_not_depend_on_the_chunks(monkeypatch):
    """Outside training each image is measured alone (batch normalisation's running averages), in any chunking."""
    X, _ = learnable_images(np.random.default_rng(12), 10)
    model = tiny_cnn(np.float32)
    whole = model.probabilities(X)
    monkeypatch.setattr(conv, "EVAL_IMAGES", 3)
    np.testing.assert_allclose(model.probabilities(X), whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(whole.sum(axis=1), 1, rtol=1e-6)
