"""Update rules: how a gradient becomes a step, each rule a small object with the state it keeps.

Every rule takes ``params``, a list of ``(param, grad)`` pairs in a fixed order (the model's ``W1, b1, W2, b2, ...``),
``lr``, the learning rate of this step, and ``weight_decay``, the model's ``L2_lambda``, and changes every ``param``
in place. Vectors (biases, batch normalisation's ``gamma`` and ``beta``) are never decayed.
``decoupled_weight_decay`` says how the decay applies:

- False (SGD, momentum): as the gradient of the penalty ``(weight_decay / 2) * ||W||^2``, part of the loss that
  ``MLP.objective`` returns, added to the gradient here: ``grad + weight_decay * W``;
- True (Adam): as AdamW's direct shrinking of the weights, ``W *= 1 - lr * weight_decay``, before the step, which is
  no part of the loss.

Each rule below is first its textbook formula in NumPy, ``reference_step``, one array operation a line: what to read.
Its ``step``, what training runs, computes the same arithmetic as one compiled pass over each parameter
(``kernels.py``, where the speed and its two harmless differences are explained); the tests hold the two together.
"""

import copy
import math
import numbers

import numpy as np

import kernels


class Optimizer:
    """What every rule shares: its ``name`` and settings (``config()``, which ``make_optimizer`` takes back), and its
    state, one array per parameter for each name in ``state_names`` (zeros made at the first step by ``start``),
    which ``state_dict()`` returns as named arrays and ``load_state_dict()`` puts back, so that a checkpoint resumes
    a run exactly."""

    name = ""
    decoupled_weight_decay = False
    state_names = ()

    def start(self, params):
        for name in self.state_names:
            if getattr(self, name) is None:
                setattr(self, name, [np.zeros_like(param) for param, _ in params])

    def state_dict(self):
        """``{"velocity.0": ..., "velocity.1": ...}``: the state of each parameter, in the order of the pairs."""
        return {f"{name}.{i}": array for name in self.state_names for i, array in enumerate(getattr(self, name) or ())}

    def load_state_dict(self, state):
        for name in self.state_names:
            arrays = []
            while f"{name}.{len(arrays)}" in state:
                arrays.append(np.array(state[f"{name}.{len(arrays)}"]))
            setattr(self, name, arrays or None)

    def config(self):
        return {"name": self.name}


def decays(param, weight_decay):
    """The weight decay that applies to ``param``: ``weight_decay`` for a weight matrix, 0 for a vector (a bias, batch
    normalisation's ``gamma`` or ``beta``)."""
    return weight_decay if param.ndim > 1 else 0.0


def fraction(name, value):
    """``value`` as a float in [0, 1), or ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return float(value)


class SGD(Optimizer):
    """Plain stochastic gradient descent: ``param -= lr * (grad + weight_decay * param)``. It keeps no state."""

    name = "sgd"

    def reference_step(self, params, lr, weight_decay=0.0):
        for param, grad in params:
            param -= lr * (grad + decays(param, weight_decay) * param)

    def step(self, params, lr, weight_decay=0.0):
        for param, grad in params:
            kernels.sgd_step(param, grad, lr, decays(param, weight_decay))


class Momentum(Optimizer):
    """SGD with momentum, in PyTorch's formulation, on the gradient with its L2 term. It keeps a ``velocity`` for each
    parameter, a running sum of its past gradients, each step's weighted by ``momentum`` once more.

    Heavy ball: ``velocity = momentum * velocity + grad``, then ``param -= lr * velocity``.
    Nesterov: the same velocity, then ``param -= lr * (grad + momentum * velocity)``, the step taken from where the
    velocity is about to carry the parameters.
    """

    state_names = ("velocity",)

    def __init__(self, momentum=0.9, nesterov=False):
        self.momentum = fraction("momentum", momentum)
        self.nesterov = bool(nesterov)
        self.velocity = None

    @property
    def name(self):
        return "nesterov" if self.nesterov else "momentum"

    def reference_step(self, params, lr, weight_decay=0.0):
        self.start(params)
        for (param, grad), velocity in zip(params, self.velocity, strict=True):
            grad = grad + decays(param, weight_decay) * param
            velocity *= self.momentum
            velocity += grad
            param -= lr * (grad + self.momentum * velocity if self.nesterov else velocity)

    def step(self, params, lr, weight_decay=0.0):
        self.start(params)
        for (param, grad), velocity in zip(params, self.velocity, strict=True):
            kernels.momentum_step(param, grad, velocity, lr, self.momentum, decays(param, weight_decay), self.nesterov)

    def config(self):
        return {"name": self.name, "momentum": self.momentum}


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias correction; with a weight decay, AdamW (Loshchilov and Hutter, 2019).

    It keeps, for each parameter, ``m`` and ``v``, running means of its gradient and of its square, and counts the
    steps in ``t``. The step is ``lr * m_hat / (sqrt(v_hat) + eps)``, where ``m_hat = m / (1 - beta1**t)`` and
    ``v_hat = v / (1 - beta2**t)`` undo the bias of starting both at zero.

    The weight decay is decoupled: ``W *= 1 - lr * weight_decay`` before the step, for the weight matrices only.
    Adam divides each gradient by its running size, so an L2 term added to the gradient would be scaled away for the
    very weights that most need the decay.
    """

    name = "adam"
    decoupled_weight_decay = True
    state_names = ("m", "v")

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        self.beta1, self.beta2 = fraction("beta1", beta1), fraction("beta2", beta2)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < math.inf:
            raise ValueError(f"eps must be a positive number (it keeps the step finite where v is 0), got {eps!r}")
        self.eps = float(eps)
        self.t = 0
        self.m = self.v = None

    def reference_step(self, params, lr, weight_decay=0.0):
        self.start(params)
        self.t += 1
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
        self.t += 1
        for (param, grad), m, v in zip(params, self.m, self.v, strict=True):
            kernels.adam_step(param, grad, m, v, self.t, lr, self.beta1, self.beta2, self.eps,
                              decays(param, weight_decay))

    def state_dict(self):
        return {"t": np.array(self.t), **super().state_dict()} if self.m is not None else {}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.t = int(state["t"]) if "t" in state else 0

    def config(self):
        return {"name": self.name, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


# The registry that make_optimizer reads: each name, the rule it makes, and the settings a config dict may give it.
RULES = {"sgd": (SGD, ()), "momentum": (Momentum, ("momentum",)),
         "nesterov": (lambda **settings: Momentum(nesterov=True, **settings), ("momentum",)),
         "adam": (Adam, ("beta1", "beta2", "eps"))}


def make_optimizer(spec):
    """An update rule from a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``), a ``config()`` dict, or
    an optimizer object, of which it returns a copy: two models given the same object must not share a state.

    A dict may hold only the settings of its rule (``RULES``): any other key is refused, not silently ignored."""
    if hasattr(spec, "step"):
        return copy.deepcopy(spec)
    if not isinstance(spec, (str, dict)):
        raise ValueError(f"optimizer must be a name, a dict such as {{'name': 'adam', 'beta1': 0.9}} or an optimizer "
                         f"object, got {spec!r}")
    settings = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = settings.pop("name", None)
    if name not in RULES:
        raise ValueError(f"unknown optimizer {name!r}: use {', '.join(map(repr, RULES))} or an optimizer object")
    make, allowed = RULES[name]
    unknown = sorted(set(settings) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"optimizer {name!r} does not take {', '.join(map(repr, unknown))}: the settings it takes "
                         f"besides 'name' are {list(allowed) or 'none'}")
    return make(**settings)
