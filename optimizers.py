"""Update rules: how a gradient becomes a step, as small objects with their own state.

Each rule has ``step(params, lr, weight_decay=0.0)``, where ``params`` is a list of ``(param, grad)`` pairs in a
fixed order (the model's ``W1, b1, W2, b2, ...``), ``lr`` the learning rate of this step and ``weight_decay`` the
model's ``L2_lambda``; it changes every ``param`` in place. State such as a velocity is kept per pair, in the same
order, and made on the first step; ``state_dict()`` returns it as named arrays and ``load_state_dict()`` puts it
back, so a checkpoint can resume a run exactly.

``decoupled_weight_decay`` says how ``weight_decay`` applies. False (SGD, momentum): as the gradient of the penalty
``(weight_decay / 2) * ||W||^2`` added to the loss, ``grad_W += weight_decay * W``. True (Adam): as a direct
shrinking of the weights, ``W *= 1 - lr * weight_decay``, before the step, as AdamW does. Biases are never decayed.

Two ways to take a step, the same arithmetic:

- ``reference_step`` is the textbook formula in plain NumPy, one array operation a line: what to read, and what the
  tests hold the fast step to.
- ``step`` runs it as one compiled pass over each parameter (numba; ``prange`` tells the compiler that the elements
  are independent, so it vectorises them, on one thread: see ``one_thread``): NumPy would make up to fourteen passes
  over every array, each a trip through memory.
  The fast step also sets to zero any state or weight that has decayed below the smallest normal float (a weight
  whose gradient stays 0, fed by a pixel that is always blank, say): arithmetic on such subnormal numbers is many
  times slower, and a value below 1e-38 changes nothing else.
"""

import copy
import math
import numbers

import numba
import numpy as np


def one_thread():
    """Make the fast steps of this thread run on one core. Two threads halve a step on its own, but inside training
    they made the wide network's epochs 2.8 times slower (21.7 against 7.8 ms a batch, measured): OpenBLAS's threads
    spin between the matrix products, and a second pool of threads fights them for the same cores."""
    numba.set_num_threads(1)


@numba.njit(parallel=True, cache=True)
def sgd_pass(p, g, lr, decay, tiny):
    for i in numba.prange(p.size):
        x = decay * p[i] - lr * g[i]
        p[i] = x if abs(x) >= tiny else x * 0


@numba.njit(parallel=True, cache=True)
def momentum_pass(p, g, v, lr, momentum, weight_decay, nesterov, tiny):
    for i in numba.prange(p.size):
        grad = g[i] + weight_decay * p[i]
        velocity = momentum * v[i] + grad
        velocity = velocity if abs(velocity) >= tiny else velocity * 0  # zero in the arrays' own type
        v[i] = velocity
        x = p[i] - lr * (grad + momentum * velocity if nesterov else velocity)
        p[i] = x if abs(x) >= tiny else x * 0


@numba.njit(parallel=True, cache=True)
def adam_pass(p, g, m, v, one_minus_beta1, one_minus_beta2, step_size, eps, decay, tiny):
    for i in numba.prange(p.size):
        mean = m[i] + (g[i] - m[i]) * one_minus_beta1
        mean = mean if abs(mean) >= tiny else mean * 0
        square = v[i] + (g[i] * g[i] - v[i]) * one_minus_beta2
        square = square if square >= tiny else tiny
        m[i], v[i] = mean, square
        x = decay * p[i] - step_size * mean / (np.sqrt(square) + eps)
        p[i] = x if abs(x) >= tiny else x * 0


def flat(array):
    """A 1-D view of a C-contiguous array, which the compiled passes write through."""
    if not array.flags.c_contiguous:
        raise ValueError("optimizers update parameters in place through flat views: pass C-contiguous arrays")
    return array.reshape(-1)


def scalars(array, *values):
    """``values`` in the array's own float type, so that the compiled pass computes in float32 for float32 weights."""
    return [array.dtype.type(value) for value in values]


def named(prefix, arrays):
    """``[a, b]`` -> ``{"prefix.0": a, "prefix.1": b}``: per-pair state as named arrays, in the order of the pairs."""
    return {f"{prefix}.{i}": array for i, array in enumerate(arrays)}


def unnamed(prefix, state):
    """The inverse of :func:`named` (copies, in order), or None when ``state`` holds no such arrays."""
    arrays = []
    while f"{prefix}.{len(arrays)}" in state:
        arrays.append(np.array(state[f"{prefix}.{len(arrays)}"]))
    return arrays or None


def fraction(name, value):
    """``value`` as a float in [0, 1), or ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return float(value)


def decays(param, weight_decay):
    """The weight decay that applies to ``param``: ``weight_decay`` for a weight matrix, 0 for a bias vector."""
    return weight_decay if param.ndim > 1 else 0.0


class SGD:
    """Plain stochastic gradient descent: ``param -= lr * (grad + weight_decay * param)`` (no decay for biases)."""

    name = "sgd"
    decoupled_weight_decay = False

    def reference_step(self, params, lr, weight_decay=0.0):
        for param, grad in params:
            param -= lr * (grad + decays(param, weight_decay) * param)

    def step(self, params, lr, weight_decay=0.0):
        for param, grad in params:
            # (1 - lr * weight_decay) * param - lr * grad: one read-modify-write of the parameter.
            sgd_pass(flat(param), flat(grad), *scalars(param, lr, 1 - lr * decays(param, weight_decay),
                                                       np.finfo(param.dtype).tiny))

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def config(self):
        return {"name": self.name}


class Momentum(SGD):
    """SGD with momentum, in PyTorch's formulation, on the gradient with its L2 term.

    Heavy ball: ``velocity = momentum * velocity + grad``, then ``param -= lr * velocity``.
    Nesterov: the same velocity, then ``param -= lr * (grad + momentum * velocity)``, the step taken from where the
    velocity is about to carry the parameters.
    """

    def __init__(self, momentum=0.9, nesterov=False):
        self.momentum = fraction("momentum", momentum)
        self.nesterov = bool(nesterov)
        self.velocities = None

    @property
    def name(self):
        return "nesterov" if self.nesterov else "momentum"

    def start(self, params):
        if self.velocities is None:
            self.velocities = [np.zeros_like(param) for param, _ in params]

    def reference_step(self, params, lr, weight_decay=0.0):
        self.start(params)
        for (param, grad), velocity in zip(params, self.velocities, strict=True):
            grad = grad + decays(param, weight_decay) * param
            velocity *= self.momentum
            velocity += grad
            param -= lr * (grad + self.momentum * velocity if self.nesterov else velocity)

    def step(self, params, lr, weight_decay=0.0):
        self.start(params)
        for (param, grad), velocity in zip(params, self.velocities, strict=True):
            momentum_pass(flat(param), flat(grad), flat(velocity),
                          *scalars(param, lr, self.momentum, decays(param, weight_decay)), self.nesterov,
                          np.finfo(param.dtype).tiny)

    def state_dict(self):
        return {} if self.velocities is None else named("velocity", self.velocities)

    def load_state_dict(self, state):
        self.velocities = unnamed("velocity", state)

    def config(self):
        return {"name": self.name, "momentum": self.momentum}


class Adam(SGD):
    """Adam (Kingma and Ba, 2015) with bias correction; with a weight decay, AdamW.

    ``m = beta1 * m + (1 - beta1) * grad`` and ``v = beta2 * v + (1 - beta2) * grad**2`` track the mean and the
    mean square of each gradient; the step is ``lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1**t)``
    and ``v_hat = v / (1 - beta2**t)`` undoing the bias of starting both at zero.

    The weight decay is decoupled (Loshchilov and Hutter, 2019): ``W *= 1 - lr * weight_decay`` before the step, for
    the weight matrices only. Adam divides each gradient by its running size, so an L2 term added to the gradient
    would be scaled away for the very weights that most need the decay.
    """

    name = "adam"
    decoupled_weight_decay = True

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        self.beta1, self.beta2 = fraction("beta1", beta1), fraction("beta2", beta2)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < math.inf:
            raise ValueError(f"eps must be a positive number (it keeps the step finite where v is 0), got {eps!r}")
        self.eps = float(eps)
        self.t = 0
        self.m = self.v = None

    def start(self, params):
        if self.m is None:
            self.m = [np.zeros_like(param) for param, _ in params]
            self.v = [np.zeros_like(param) for param, _ in params]
        self.t += 1

    def reference_step(self, params, lr, weight_decay=0.0):
        self.start(params)
        for (param, grad), m, v in zip(params, self.m, self.v, strict=True):
            param *= 1 - lr * decays(param, weight_decay)
            m *= self.beta1
            m += (1 - self.beta1) * grad
            v *= self.beta2
            v += (1 - self.beta2) * grad * grad
            m_hat = m / (1 - self.beta1 ** self.t)
            v_hat = v / (1 - self.beta2 ** self.t)
            param -= lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def step(self, params, lr, weight_decay=0.0):
        self.start(params)
        # The bias corrections folded into the step size and eps: lr * m_hat / (sqrt(v_hat) + eps) is
        # step_size * m / (sqrt(v) + eps_hat), with no pass over the arrays to correct m and v.
        correction2 = np.sqrt(1 - self.beta2 ** self.t)
        step_size = lr * correction2 / (1 - self.beta1 ** self.t)
        for (param, grad), m, v in zip(params, self.m, self.v, strict=True):
            adam_pass(flat(param), flat(grad), flat(m), flat(v),
                      *scalars(param, 1 - self.beta1, 1 - self.beta2, step_size, self.eps * correction2,
                               1 - lr * decays(param, weight_decay), np.finfo(param.dtype).tiny))

    def state_dict(self):
        if self.m is None:
            return {}
        return {"t": np.array(self.t), **named("m", self.m), **named("v", self.v)}

    def load_state_dict(self, state):
        self.t = int(state["t"]) if "t" in state else 0
        self.m, self.v = unnamed("m", state), unnamed("v", state)

    def config(self):
        return {"name": self.name, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


SETTINGS = {"sgd": (), "momentum": ("momentum",), "nesterov": ("momentum",), "adam": ("beta1", "beta2", "eps")}


def make_optimizer(spec):
    """An update rule from a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``), a ``config()`` dict, or
    an optimizer object, of which it returns a copy: two models given the same object must not share a state.

    A dict may hold only the settings of its rule (``SETTINGS``): any other key is refused, not silently ignored."""
    if hasattr(spec, "step"):
        return copy.deepcopy(spec)
    if not isinstance(spec, (str, dict)):
        raise ValueError(f"optimizer must be a name, a dict such as {{'name': 'adam', 'beta1': 0.9}} or an optimizer "
                         f"object, got {spec!r}")
    config = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = config.pop("name", None)
    if name not in SETTINGS:
        raise ValueError(f"unknown optimizer {name!r}: use 'sgd', 'momentum', 'nesterov', 'adam' or an optimizer "
                         "object")
    unknown = sorted(set(config) - set(SETTINGS[name]), key=str)
    if unknown:
        raise ValueError(f"optimizer {name!r} does not take {', '.join(map(repr, unknown))}: the settings it takes "
                         f"besides 'name' are {list(SETTINGS[name]) or 'none'}")
    if name == "sgd":
        return SGD()
    if name in ("momentum", "nesterov"):
        return Momentum(nesterov=name == "nesterov", **config)
    return Adam(**config)
