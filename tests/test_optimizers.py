"""The update rules as formulas: each rule's steps against numbers worked out by hand (or PyTorch's), both as the
textbook formula (``reference_step``) and as the compiled step training takes (``step``); the registry; the state."""

import numpy as np
import pytest

from optimizers import SGD, Adam, Momentum, make_optimizer

GRADS = [np.array([0.5, -1.0]), np.array([0.25, 2.0]), np.array([-1.0, 0.5])]
LRS = [0.1, 0.1, 0.05]


STEPS = pytest.mark.parametrize("method", ["reference_step", "step"])


def run(optimizer, method="step"):
    """Three steps of ``optimizer`` on one parameter vector; the parameter after each step."""
    param = np.array([1.0, 2.0])
    trajectory = []
    for grad, lr in zip(GRADS, LRS, strict=True):
        getattr(optimizer, method)([(param, grad)], lr)
        trajectory.append(param.copy())
    return trajectory


@STEPS
def test_sgd_steps_against_the_gradient(method):
    expected = [np.array([0.95, 2.1]), np.array([0.925, 1.9]), np.array([0.975, 1.875])]
    np.testing.assert_allclose(run(SGD(), method), expected)


@STEPS
def test_sgd_adds_the_l2_gradient_to_weight_matrices_only(method):
    W, b = np.array([[1.0, -2.0]]), np.array([1.0, -2.0])
    getattr(SGD(), method)([(W, np.zeros_like(W)), (b, np.zeros_like(b))], lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(W, [[0.95, -1.9]])
    np.testing.assert_array_equal(b, [1.0, -2.0])


@STEPS
def test_heavy_ball_momentum_accumulates_a_velocity(method):
    # velocity: [0.5, -1], then 0.9 * that + [0.25, 2] = [0.7, 1.1], then 0.9 * that + [-1, 0.5] = [-0.37, 1.49]
    expected = [np.array([1 - 0.05, 2 + 0.1]),
                np.array([0.95 - 0.07, 2.1 - 0.11]),
                np.array([0.88 + 0.0185, 1.99 - 0.0745])]
    np.testing.assert_allclose(run(Momentum(0.9), method), expected)


@STEPS
def test_nesterov_steps_from_where_the_velocity_leads(method):
    # step = lr * (grad + 0.9 * velocity) with the velocities of the heavy-ball test
    expected = [np.array([1 - 0.1 * 0.95, 2 + 0.1 * 1.9]),
                np.array([0.905 - 0.1 * 0.88, 2.19 - 0.1 * 2.99]),
                np.array([0.817 - 0.05 * (-1.333), 1.891 - 0.05 * 1.841])]
    np.testing.assert_allclose(run(Momentum(0.9, nesterov=True), method), expected)


@STEPS
def test_adam_follows_the_textbook_formula(method):
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    param, m, v, expected = np.array([1.0, 2.0]), np.zeros(2), np.zeros(2), []
    for t, (grad, lr) in enumerate(zip(GRADS, LRS, strict=True), start=1):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        param = param - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
        expected.append(param)
    np.testing.assert_allclose(run(Adam(beta1, beta2, eps), method), expected, rtol=1e-12)
    first_step = run(Adam(), method)[0]
    np.testing.assert_allclose(first_step, [1 - 0.1, 2 + 0.1], rtol=1e-6)  # Adam's first step is lr * sign(grad)


@STEPS
def test_each_parameter_keeps_its_own_state(method):
    a, b = np.zeros(2), np.zeros(3)
    optimizer = Momentum(0.5)
    for _ in range(2):
        getattr(optimizer, method)([(a, np.ones(2)), (b, 2 * np.ones(3))], lr=1.0)
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
