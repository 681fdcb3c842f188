import numpy as np
import pytest

from optimizers import SGD, Adam, Momentum, make_optimizer

GRADS = [np.array([0.5, -1.0]), np.array([0.25, 2.0]), np.array([-1.0, 0.5])]
LRS = [0.1, 0.1, 0.05]


def run(optimizer):
    """Three steps of ``optimizer`` on one parameter vector; the parameter after each step."""
    param = np.array([1.0, 2.0])
    trajectory = []
    for grad, lr in zip(GRADS, LRS, strict=True):
        optimizer.step([(param, grad)], lr)
        trajectory.append(param.copy())
    return trajectory


def test_sgd_steps_against_the_gradient():
    expected = [np.array([0.95, 2.1]), np.array([0.925, 1.9]), np.array([0.975, 1.875])]
    np.testing.assert_allclose(run(SGD()), expected)


def test_heavy_ball_momentum_accumulates_a_velocity():
    # velocity: [0.5, -1], then 0.9 * that + [0.25, 2] = [0.7, 1.1], then 0.9 * that + [-1, 0.5] = [-0.37, 1.49]
    expected = [np.array([1 - 0.05, 2 + 0.1]),
                np.array([0.95 - 0.07, 2.1 - 0.11]),
                np.array([0.88 + 0.0185, 1.99 - 0.0745])]
    np.testing.assert_allclose(run(Momentum(0.9)), expected)


def test_nesterov_steps_from_where_the_velocity_leads():
    # step = lr * (grad + 0.9 * velocity) with the velocities of the heavy-ball test
    expected = [np.array([1 - 0.1 * 0.95, 2 + 0.1 * 1.9]),
                np.array([0.905 - 0.1 * 0.88, 2.19 - 0.1 * 2.99]),
                np.array([0.817 - 0.05 * (-1.333), 1.891 - 0.05 * 1.841])]
    np.testing.assert_allclose(run(Momentum(0.9, nesterov=True)), expected)


def test_adam_follows_the_textbook_formula():
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    param, m, v, expected = np.array([1.0, 2.0]), np.zeros(2), np.zeros(2), []
    for t, (grad, lr) in enumerate(zip(GRADS, LRS, strict=True), start=1):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        param = param - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        expected.append(param)
    np.testing.assert_allclose(run(Adam(beta1, beta2, eps)), expected, rtol=1e-12)
    first_step = run(Adam())[0]
    np.testing.assert_allclose(first_step, [1 - 0.1, 2 + 0.1], rtol=1e-6)  # Adam's first step is lr * sign(grad)


def test_each_parameter_keeps_its_own_state():
    a, b = np.zeros(2), np.zeros(3)
    optimizer = Momentum(0.5)
    for _ in range(2):
        optimizer.step([(a, np.ones(2)), (b, 2 * np.ones(3))], lr=1.0)
    np.testing.assert_allclose(a, -2.5)  # velocities 1, then 1.5
    np.testing.assert_allclose(b, -5.0)


def test_make_optimizer_from_names_configs_and_objects():
    assert isinstance(make_optimizer("sgd"), SGD)
    assert make_optimizer("nesterov").nesterov
    assert make_optimizer({"name": "momentum", "momentum": 0.5}).momentum == 0.5
    adam = Adam(beta1=0.8)
    copy = make_optimizer(adam)
    assert copy is not adam and copy.config() == adam.config()  # two models never share one state
    assert make_optimizer(adam.config()).beta1 == 0.8
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="momentum must lie"):
        Momentum(1.5)


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
def test_optimizers_match_pytorch(name):
    torch = pytest.importorskip("torch", reason="PyTorch is an optional reference (pip install torch==2.13.0)")
    rng = np.random.default_rng(0)
    param = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(6)]
    reference = torch.tensor(param.copy(), requires_grad=True)
    if name == "adam":
        ours, theirs = Adam(), torch.optim.Adam([reference], lr=0.01)
    else:
        ours = Momentum(0.9, nesterov=name == "nesterov")
        theirs = torch.optim.SGD([reference], lr=0.01, momentum=0.9, nesterov=name == "nesterov")
    for grad in grads:
        ours.step([(param, grad)], lr=0.01)
        reference.grad = torch.tensor(grad)
        theirs.step()
    np.testing.assert_allclose(param, reference.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("make", [SGD, Momentum, lambda: Momentum(nesterov=True), Adam])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fast_step_is_the_reference_step(make, weight_decay, dtype):
    rng = np.random.default_rng(1)
    shapes = [(300, 257), (257,), (257, 10), (10,)]  # larger than a thread's share, and odd sizes
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
    for got, expected in zip(fast_rule.state_dict().values(), reference_rule.state_dict().values(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)


def test_adam_follows_the_textbook_formula_on_a_large_array():
    rng = np.random.default_rng(1)
    param = rng.standard_normal((400, 300))
    expected, m, v = param.copy(), np.zeros_like(param), np.zeros_like(param)
    adam = Adam()
    for t in range(1, 4):
        grad = rng.standard_normal(param.shape)
        adam.step([(param, grad)], lr=0.01)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        expected -= 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(param, expected, rtol=1e-10)


def test_non_contiguous_parameters_are_refused():
    param = np.zeros((4, 6))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        Adam().step([(param, np.ones_like(param))], lr=0.1)


def test_adam_keeps_its_moments_out_of_the_subnormal_range():
    param, ones = np.ones(1000, dtype=np.float32), np.ones(1000, dtype=np.float32)
    adam = Adam()
    adam.step([(param, ones)], lr=1e-3)
    adam.v[0][:] = 1e-40  # subnormal: what a gradient that stays 0 leaves after many steps
    adam.m[0][:500] = 1e-39
    m, before = adam.m[0].astype(np.float64), param.astype(np.float64)
    adam.step([(param, np.zeros_like(param))], lr=1e-3)
    tiny = np.finfo(np.float32).tiny
    assert np.all(adam.v[0] >= tiny)
    assert np.all(adam.m[0][:500] == 0) and np.all(np.abs(adam.m[0][500:]) >= tiny)
    m = np.where(np.arange(1000) < 500, 0, 0.9 * m)
    v = 0.999 * 1e-40
    expected = before - 1e-3 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(param, expected, rtol=1e-6)


@pytest.mark.parametrize("make", [SGD, Momentum])
def test_weights_and_velocities_that_decay_below_the_normal_floats_become_zero(make):
    tiny = np.finfo(np.float32).tiny
    param = np.array([[1.5 * tiny, 1.0]], dtype=np.float32)
    rule = make()
    rule.step([(param, np.zeros_like(param))], lr=0.5, weight_decay=1.0)  # halves the weights
    assert param[0, 0] == 0 and param[0, 1] == np.float32(0.5)
    if make is Momentum:
        rule.velocities[0][:] = 1e-39
        rule.step([(param, np.zeros_like(param))], lr=0.0)
        assert np.all(rule.velocities[0] == 0)


@pytest.mark.parametrize("make", [SGD, Momentum, lambda: Momentum(nesterov=True), Adam])
def test_state_dict_carries_a_run_over_to_a_new_optimizer(make):
    params = [np.array([1.0, 2.0]), np.array([[0.5]])]
    grads = [[np.array([0.5, -1.0]), np.array([[2.0]])], [np.array([0.25, 2.0]), np.array([[-1.0]])]]
    first = make()
    assert first.state_dict() == {}
    first.step(list(zip(params, grads[0], strict=True)), lr=0.1)
    state = {name: array.copy() for name, array in first.state_dict().items()}
    assert all(isinstance(array, np.ndarray) for array in state.values())
    second, copies = make(), [param.copy() for param in params]
    second.load_state_dict(state)
    first.step(list(zip(params, grads[1], strict=True)), lr=0.1)
    second.step(list(zip(copies, grads[1], strict=True)), lr=0.1)
    for param, copy in zip(params, copies, strict=True):
        np.testing.assert_array_equal(copy, param)
