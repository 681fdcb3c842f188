"""Update rules: how a gradient becomes a step, as small objects with their own state.

Each rule has ``step(params, lr, weight_decay=0.0)``, where ``params`` is a list of ``(param, grad)`` pairs in a
fixed order (the model's ``W1, b1, W2, b2, ...``), ``lr`` the learning rate of this step and ``weight_decay`` the
model's ``L2_lambda``; it changes every ``param`` in place. State such as a velocity is kept per pair, in the same
order, and made on the first step; ``state_dict()`` returns it as named arrays and ``load_state_dict()`` puts it
back, so a checkpoint can resume a run exactly.

``decoupled_weight_decay`` says how ``weight_decay`` applies. False (SGD, momentum): as the gradient of the penalty
``(weight_decay / 2) * ||W||^2`` added to the loss, ``grad_W += weight_decay * W``. True (Adam): as a direct
shrinking of the weights, ``W *= 1 - lr * weight_decay``, before the step, as AdamW does. Biases are never decayed.
"""

import copy

import numpy as np

# Elements per chunk in the stateful rules: a chunk of the parameter, its gradient and state (a few 128 KB float32
# pieces) stays in the cache through all the arithmetic of one step, instead of every operation streaming whole
# multi-megabyte arrays through memory again.
CHUNK = 1 << 15


def chunks(*arrays):
    """Matching flat views, ``CHUNK`` elements at a time, of arrays of one shape; writing to them writes the arrays."""
    if not all(array.flags.c_contiguous for array in arrays):
        raise ValueError("optimizers update parameters in place through flat views: pass C-contiguous arrays")
    flat = [array.reshape(-1) for array in arrays]
    for start in range(0, flat[0].size, CHUNK):
        yield [part[start:start + CHUNK] for part in flat]


def named(prefix, arrays):
    """``[a, b]`` -> ``{"prefix.0": a, "prefix.1": b}``: per-pair state as named arrays, in the order of the pairs."""
    return {f"{prefix}.{i}": array for i, array in enumerate(arrays)}


def unnamed(prefix, state):
    """The inverse of :func:`named` (copies, in order), or None when ``state`` holds no such arrays."""
    arrays = []
    while f"{prefix}.{len(arrays)}" in state:
        arrays.append(np.array(state[f"{prefix}.{len(arrays)}"]))
    return arrays or None


def add_l2_gradient(params, weight_decay):
    """Add ``weight_decay * W``, the gradient of the penalty ``(weight_decay / 2) * ||W||^2``, to each weight
    matrix's gradient; bias vectors are never regularised."""
    if weight_decay:
        for param, grad in params:
            if param.ndim > 1:
                grad += weight_decay * param


class SGD:
    """Plain stochastic gradient descent: ``param -= lr * (grad + weight_decay * param)`` (no decay for biases)."""

    name = "sgd"
    decoupled_weight_decay = False

    def step(self, params, lr, weight_decay=0.0):
        add_l2_gradient(params, weight_decay)
        for param, grad in params:
            param -= lr * grad

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
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocities = None

    @property
    def name(self):
        return "nesterov" if self.nesterov else "momentum"

    def step(self, params, lr, weight_decay=0.0):
        add_l2_gradient(params, weight_decay)
        if self.velocities is None:
            self.velocities = [np.zeros_like(param) for param, _ in params]
        for (param, grad), velocity in zip(params, self.velocities, strict=True):
            for p, g, v in chunks(param, grad, velocity):
                v *= self.momentum
                v += g
                p -= lr * (g + self.momentum * v if self.nesterov else v)

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
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0
        self.m = self.v = None
        self.scratch = None

    def step(self, params, lr, weight_decay=0.0):
        if self.m is None:
            self.m = [np.zeros_like(param) for param, _ in params]
            self.v = [np.zeros_like(param) for param, _ in params]
        if self.scratch is None:
            self.scratch = np.empty(CHUNK, dtype=params[0][0].dtype)
            self.tiny = np.finfo(params[0][0].dtype).tiny
        self.t += 1
        correction1 = 1 - self.beta1 ** self.t
        correction2 = 1 - self.beta2 ** self.t
        # Folding the bias corrections into the step size and eps saves two passes over every parameter. They stay
        # Python floats: a NumPy float64 scalar would make each operation on the float32 arrays run in float64,
        # through casting buffers, at a fraction of the speed.
        step_size = float(lr * np.sqrt(correction2) / correction1)
        eps = float(self.eps * np.sqrt(correction2))
        for (param, grad), m_all, v_all in zip(params, self.m, self.v, strict=True):
            decay = float(1 - lr * weight_decay) if param.ndim > 1 else 1
            # In place, through one scratch buffer: no array is allocated in the loop.
            for p, g, m, v in chunks(param, grad, m_all, v_all):
                tmp = self.scratch[:p.size]
                if decay != 1:
                    p *= decay
                np.subtract(g, m, out=tmp)  # m = beta1 * m + (1 - beta1) * g
                tmp *= 1 - self.beta1
                m += tmp
                np.multiply(g, g, out=tmp)  # v = beta2 * v + (1 - beta2) * g**2
                tmp -= v
                tmp *= 1 - self.beta2
                v += tmp
                # Where the gradient stays 0 (a pixel that is always blank, a dead unit) v decays into subnormal
                # numbers, on which every operation is many times slower. Below the smallest normal number,
                # sqrt(v) is 1e-19 and vanishes beside eps, so the floor leaves every step exactly as it was.
                np.maximum(v, self.tiny, out=v)
                np.sqrt(v, out=tmp)  # p -= step_size * m / (sqrt(v) + eps)
                tmp += eps
                np.divide(m, tmp, out=tmp)
                tmp *= step_size
                p -= tmp

    def state_dict(self):
        if self.m is None:
            return {}
        return {"t": np.array(self.t), **named("m", self.m), **named("v", self.v)}

    def load_state_dict(self, state):
        self.t = int(state["t"]) if "t" in state else 0
        self.m, self.v = unnamed("m", state), unnamed("v", state)

    def config(self):
        return {"name": self.name, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


def make_optimizer(spec):
    """An update rule from a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``), a ``config()`` dict, or
    an optimizer object, of which it returns a copy: two models given the same object must not share a state."""
    if hasattr(spec, "step"):
        return copy.deepcopy(spec)
    config = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = config.pop("name", None)
    if name == "sgd":
        return SGD()
    if name in ("momentum", "nesterov"):
        return Momentum(nesterov=name == "nesterov", **config)
    if name == "adam":
        return Adam(**config)
    raise ValueError(f"unknown optimizer {name!r}: use 'sgd', 'momentum', 'nesterov', 'adam' or an optimizer object")
