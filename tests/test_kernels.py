"""The compiled passes of ``kernels.py``, each held to its rule's formula: float32 and float64, with and without the
weight decay, Adam's bias correction, and the flushes below the smallest normal float."""

import numpy as np
import pytest

import kernels
from modules import Dropout
from optimizers import SGD, Adam, Momentum

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])
DECAYS = pytest.mark.parametrize("weight_decay", [0.0, 0.05])
SHAPE = (300, 257)  # larger than a vector register's share, and an odd size


def arrays(dtype, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(dtype) for _ in range(n)]


def close(dtype):
    """What the same arithmetic, in another order of operations, may differ by."""
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


@DTYPES
@DECAYS
def test_sgd_step_is_sgds_formula(dtype, weight_decay):
    param, grad = arrays(dtype, 2)
    expected = param.astype(np.float64) - 0.1 * (grad + weight_decay * param.astype(np.float64))
    kernels.sgd_step(param, grad, 0.1, weight_decay)
    assert param.dtype == dtype
    np.testing.assert_allclose(param, expected, **close(dtype))


@DTYPES
@DECAYS
@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_step_is_momentums_formula(dtype, weight_decay, nesterov):
    param, grad, velocity = arrays(dtype, 3)
    p, g, v = (array.astype(np.float64) for array in (param, grad, velocity))
    g = g + weight_decay * p
    v = 0.9 * v + g
    expected = p - 0.1 * (g + 0.9 * v if nesterov else v)
    kernels.momentum_step(param, grad, velocity, 0.1, 0.9, weight_decay, nesterov)
    np.testing.assert_allclose(velocity, v, **close(dtype))
    np.testing.assert_allclose(param, expected, **close(dtype))


@DTYPES
@DECAYS
@pytest.mark.parametrize("t", [1, 2, 50])  # the bias correction matters most at the first steps
def test_adam_step_is_adamws_formula_with_its_bias_correction(dtype, weight_decay, t):
    param, grad, m, v = arrays(dtype, 4)
    v = np.abs(v)
    p, g, m64, v64 = (array.astype(np.float64) for array in (param, grad, m, v))
    m64 = 0.9 * m64 + 0.1 * g
    v64 = 0.999 * v64 + 0.001 * g * g
    m_hat, v_hat = m64 / (1 - 0.9**t), v64 / (1 - 0.999**t)
    expected = p * (1 - 0.01 * weight_decay) - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8)
    kernels.adam_step(param, grad, m, v, t, 0.01, 0.9, 0.999, 1e-8, weight_decay)
    np.testing.assert_allclose(m, m64, **close(dtype))
    np.testing.assert_allclose(v, v64, **close(dtype))
    np.testing.assert_allclose(param, expected, **close(dtype))


def test_adams_first_step_is_the_learning_rate_times_the_sign_of_the_gradient():
    param, grad = np.zeros(4), np.array([3.0, -0.5, 1e-3, -20.0])
    kernels.adam_step(param, grad, np.zeros(4), np.zeros(4), 1, 0.01, 0.9, 0.999, 1e-8, 0.0)
    np.testing.assert_allclose(param, -0.01 * np.sign(grad), rtol=1e-5)


@pytest.mark.parametrize("make", [SGD, Momentum, lambda: Momentum(nesterov=True), Adam])
@DECAYS
@DTYPES
def test_each_rules_fast_step_is_its_reference_step(make, weight_decay, dtype):
    rng = np.random.default_rng(1)
    shapes = [(300, 257), (257,), (257, 10), (10,)]
    fast = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    reference = [param.copy() for param in fast]
    fast_rule, reference_rule = make(), make()
    for step in range(5):
        grads = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
        fast_rule.step(list(zip(fast, [g.copy() for g in grads], strict=True)), 0.01 * (step + 1), weight_decay)
        reference_rule.reference_step(list(zip(reference, grads, strict=True)), 0.01 * (step + 1), weight_decay)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for got, expected in zip(fast, reference, strict=True):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
    assert list(fast_rule.state_dict()) == list(reference_rule.state_dict())
    for got, expected in zip(fast_rule.state_dict().values(), reference_rule.state_dict().values(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)


def test_non_contiguous_parameters_are_refused():
    param = np.zeros((4, 6))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        Adam().step([(param, np.ones_like(param))], lr=0.1)


# -- the flushes below the smallest normal float ------------------------------------------------------------------

@DTYPES
def test_sgd_flushes_weights_that_decay_below_the_normal_floats(dtype):
    tiny = np.finfo(dtype).tiny
    param = np.array([[1.5 * tiny, -1.5 * tiny, 1.0]], dtype=dtype)
    kernels.sgd_step(param, np.zeros_like(param), 0.5, 1.0)  # halves the weights
    assert param[0, 0] == 0 and param[0, 1] == 0 and param[0, 2] == dtype(0.5)


@DTYPES
def test_momentum_flushes_weights_and_velocities_below_the_normal_floats(dtype):
    tiny = np.finfo(dtype).tiny
    param, velocity = np.array([1.5 * tiny, 1.0], dtype=dtype), np.array([0.5 * tiny, 1.0], dtype=dtype)
    kernels.momentum_step(param, np.zeros_like(param), velocity, 0.5, 0.5, 0.0, False)
    assert velocity[0] == 0 and velocity[1] == dtype(0.5)
    assert param[0] == 1.5 * tiny and param[1] == dtype(0.75)
    param = np.array([1.5 * tiny], dtype=dtype)
    kernels.momentum_step(param, np.zeros_like(param), np.zeros_like(param), 0.5, 0.5, 1.0, False)
    assert param[0] == 0  # 1.5 tiny - 0.5 * 1.5 tiny, below tiny


def test_adam_flushes_m_and_holds_v_at_the_smallest_normal_float():
    param, ones = np.ones(1000, dtype=np.float32), np.ones(1000, dtype=np.float32)
    adam = Adam()
    adam.step([(param, ones)], lr=1e-3)
    adam.v[0][:] = 1e-40  # subnormal: what a gradient that stays 0 leaves after many steps
    adam.m[0][:500] = 1e-39
    m, before = adam.m[0].astype(np.float64), param.astype(np.float64)
    adam.step([(param, np.zeros_like(param))], lr=1e-3)
    tiny = np.finfo(np.float32).tiny
    assert np.all(adam.v[0] == tiny)
    assert np.all(adam.m[0][:500] == 0) and np.all(np.abs(adam.m[0][500:]) >= tiny)
    m = np.where(np.arange(1000) < 500, 0, 0.9 * m)
    v = 0.999 * 1e-40
    expected = before - 1e-3 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(param, expected, rtol=1e-6)


@DTYPES
@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])  # float32(0.7) < 0.7: a float64 comparison would differ
def test_dropout_s_one_pass_is_its_reference_bit_for_bit_even_for_draws_at_p(dtype, p):
    bottom = arrays(dtype, 1)[0]
    at_p = np.float32(p)
    edge = np.array([np.nextafter(at_p, np.float32(0)), at_p, np.nextafter(at_p, np.float32(1))], dtype=np.float32)
    draws = np.random.default_rng(1).random(SHAPE, dtype=np.float32)
    draws.reshape(-1)[:3] = edge  # where comparing in float64 instead of float32 would keep other units

    class Replay:  # hands out the same draws to both
        def random(self, shape, dtype):
            assert shape == draws.shape and dtype == np.float32
            return draws.copy()

    fast, reference = Dropout(p, rng=Replay()), Dropout(p, rng=Replay())
    fast.training = reference.training = True
    top, expected = fast.forward(bottom), reference.reference_forward(bottom)
    assert top.dtype == expected.dtype == dtype
    np.testing.assert_array_equal(top, expected)
    np.testing.assert_array_equal(fast.mask, reference.mask)
    assert fast.mask.reshape(-1)[0] == 0 and fast.mask.reshape(-1)[1] > 0  # a draw of exactly p is kept
