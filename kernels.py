"""The fast steps: each update rule of ``optimizers.py`` as one compiled pass over a parameter, what training runs;
batch normalisation's forward and backward, and dropout's mask, in as few passes as their formulas need;
and the augmentation of a training batch in one pass (:func:`moved_images`).

NumPy would take a rule's formula one array operation at a time, up to fourteen passes over every array, each a trip
through memory; numba compiles each rule into one loop that reads and writes every element once (``prange`` tells the
compiler that the elements are independent, so it vectorises them, on one thread: see ``one_thread``). Each function
below takes one parameter, its gradient and its state, as the formulas do, and computes the same arithmetic; the tests
hold each to its formula (``tests/test_kernels.py``). Two differences, both invisible in the results:

- a weight or state that falls below the smallest normal float (``tiny``, 1.2e-38 in float32) becomes 0: a weight
  whose gradient stays 0 (fed by a pixel that is always blank, say) decays towards such subnormal numbers, on which
  arithmetic is many times slower, and a value below 1e-38 changes nothing else; Adam's ``v`` is held at ``tiny``
  instead, so that ``sqrt(v)`` stays a normal number;
- Adam folds its bias corrections into the step size and ``eps`` instead of correcting ``m`` and ``v``
  (see ``adam_step``).

Names as in the formulas: ``lr`` the learning rate, ``weight_decay`` the L2 coefficient of the parameter (0 for a
bias), and ``shrink = 1 - lr * weight_decay``, the factor by which SGD's and AdamW's step multiplies the weights.
"""

import numba
import numpy as np


def one_thread():
    """Make the fast steps of this thread run on one core. Two threads halve a step on its own, but inside training
    they made the wide network's epochs 2.8 times slower (21.7 against 7.8 ms a batch, measured): OpenBLAS's threads
    spin between the matrix products, and a second pool of threads fights them for the same cores."""
    numba.set_num_threads(1)


@numba.njit(parallel=True, cache=True)
def sgd_pass(p, g, lr, shrink, tiny):
    for i in numba.prange(p.size):
        x = shrink * p[i] - lr * g[i]
        p[i] = x if abs(x) >= tiny else x * 0  # zero in the arrays' own type


@numba.njit(parallel=True, cache=True)
def momentum_pass(p, g, v, lr, momentum, weight_decay, nesterov, tiny):
    for i in numba.prange(p.size):
        grad = g[i] + weight_decay * p[i]
        velocity = momentum * v[i] + grad
        velocity = velocity if abs(velocity) >= tiny else velocity * 0
        v[i] = velocity
        x = p[i] - lr * (grad + momentum * velocity if nesterov else velocity)
        p[i] = x if abs(x) >= tiny else x * 0


@numba.njit(parallel=True, cache=True)
def adam_pass(p, g, m, v, one_minus_beta1, one_minus_beta2, step_size, eps_hat, shrink, tiny):
    for i in numba.prange(p.size):
        mean = m[i] + (g[i] - m[i]) * one_minus_beta1
        mean = mean if abs(mean) >= tiny else mean * 0
        square = v[i] + (g[i] * g[i] - v[i]) * one_minus_beta2
        square = square if square >= tiny else tiny
        m[i], v[i] = mean, square
        x = shrink * p[i] - step_size * mean / (np.sqrt(square) + eps_hat)
        p[i] = x if abs(x) >= tiny else x * 0


def sgd_step(param, grad, lr, weight_decay):
    """``param = shrink * param - lr * grad``: ``param -= lr * (grad + weight_decay * param)`` in one pass."""
    sgd_pass(flat(param), flat(grad), *scalars(param, lr, 1 - lr * weight_decay), smallest_normal(param))


def momentum_step(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """Momentum's formula (``optimizers.Momentum``), with the L2 term added to the gradient, in one pass."""
    momentum_pass(flat(param), flat(grad), flat(velocity), *scalars(param, lr, momentum, weight_decay), nesterov,
                  smallest_normal(param))


def adam_step(param, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """Step ``t`` of AdamW's formula (``optimizers.Adam``) in one pass.

    ``lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1**t)`` and ``v_hat = v / (1 - beta2**t)`` is
    ``step_size * m / (sqrt(v) + eps_hat)`` with ``step_size = lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` and
    ``eps_hat = eps * sqrt(1 - beta2**t)``: the same step, with no pass over the arrays to correct ``m`` and ``v``.
    """
    correction2 = np.sqrt(1 - beta2 ** t)
    step_size = lr * correction2 / (1 - beta1 ** t)
    adam_pass(flat(param), flat(grad), flat(m), flat(v), *scalars(param, 1 - beta1, 1 - beta2, step_size,
                                                                  eps * correction2, 1 - lr * weight_decay),
              smallest_normal(param))


def flat(array):
    """A 1-D view of a C-contiguous array, which the compiled passes write through."""
    if not array.flags.c_contiguous:
        raise ValueError("optimizers update parameters in place through flat views: pass C-contiguous arrays")
    return array.reshape(-1)


def scalars(array, *values):
    """``values`` in the array's own float type, so that the compiled pass computes in float32 for float32 weights."""
    return [array.dtype.type(value) for value in values]


def smallest_normal(array):
    """The smallest normal number of the array's type: below it, the passes flush to 0."""
    return np.finfo(array.dtype).tiny


@numba.njit(cache=True)
def moved_images(images, side, moves, flips):
    """``images`` (N, side * side), each moved down and right by its ``moves`` (N, 2) whole pixels, then mirrored left
    to right where ``flips`` (N,) is set: the batch augmentation the Solver applies in training.

    Zero padding, then a crop: the pixels that leave the frame are lost, the ones that enter are 0. One compiled
    pass that copies each pixel from where it comes from; ``tests/test_batchnorm.py`` holds it to a loop over pixels.
    """
    out = np.zeros_like(images)
    for i in range(images.shape[0]):
        down, right = moves[i, 0], moves[i, 1]
        for row in range(max(0, down), min(side, side + down)):
            source = (row - down) * side
            for column in range(side):
                from_column = (side - 1 - column if flips[i] else column) - right
                if 0 <= from_column < side:
                    out[i, row * side + column] = images[i, source + from_column]
    return out


# -- batch normalisation (modules.BatchNorm), in three passes forward and two backward ---------------------------
# Each loops over the rows, and over the features within a row, as NumPy reduces a C-contiguous batch over its first
# axis: the sums add the rows in the same order, so the results equal the reference formulas' bit for bit
# (``tests/test_batchnorm.py``). No ``fastmath``: it would let the compiler reorder the sums and fuse a multiply
# with an add, which rounds differently.


@numba.njit(cache=True)
def batch_moments(bottom):
    """bottom (N, H) -> the mean (H,) and biased variance (H,) of each feature over the batch, as ``bottom.mean(0)``
    and ``((bottom - mean) ** 2).mean(0)`` take them: two passes (the variance's sum needs the mean first)."""
    n, h = bottom.shape
    total, squares = np.zeros(h, dtype=bottom.dtype), np.zeros(h, dtype=bottom.dtype)
    mean, var = np.empty(h, dtype=bottom.dtype), np.empty(h, dtype=bottom.dtype)
    for i in range(n):
        for j in range(h):
            total[j] += bottom[i, j]
    for j in range(h):
        mean[j] = total[j] / n
    for i in range(n):
        for j in range(h):
            centered = bottom[i, j] - mean[j]
            squares[j] += centered * centered
    for j in range(h):
        var[j] = squares[j] / n
    return mean, var


@numba.njit(cache=True)
def normalise(bottom, mean, inv_std, gamma, beta, x_hat, top):
    """Fills ``x_hat = (bottom - mean) * inv_std`` and ``top = x_hat * gamma + beta`` (N, H) in one pass."""
    n, h = bottom.shape
    for i in range(n):
        for j in range(h):
            normalised = (bottom[i, j] - mean[j]) * inv_std[j]
            x_hat[i, j] = normalised
            top[i, j] = normalised * gamma[j] + beta[j]


@numba.njit(cache=True)
def batchnorm_backward(top_diff, x_hat, scale_over_n, n, grad_gamma, grad_beta, bottom_diff):
    """Fills ``grad_beta = sum(top_diff)``, ``grad_gamma = sum(top_diff * x_hat)`` (H,) in one pass, then
    ``bottom_diff = (top_diff * n - grad_beta - x_hat * grad_gamma) * scale_over_n`` (N, H) in a second; ``n`` the
    batch size in the arrays' type, ``scale_over_n = gamma * inv_std / n``."""
    rows, h = top_diff.shape
    grad_gamma[:] = 0
    grad_beta[:] = 0
    for i in range(rows):
        for j in range(h):
            grad_beta[j] += top_diff[i, j]
            grad_gamma[j] += top_diff[i, j] * x_hat[i, j]
    for i in range(rows):
        for j in range(h):
            bottom_diff[i, j] = (top_diff[i, j] * n - grad_beta[j] - x_hat[i, j] * grad_gamma[j]) * scale_over_n[j]


@numba.njit(cache=True)
def dropout_pass(bottom, draws, p, scale, mask, top):
    """Fills ``mask = scale where draws >= p, else 0`` and ``top = bottom * mask`` in one pass, for ``Dropout``:
    ``draws`` the layer's uniform draws, ``p`` and ``scale = 1 / (1 - p)`` in the arrays' type."""
    bottom, draws, mask, top = bottom.reshape(-1), draws.reshape(-1), mask.reshape(-1), top.reshape(-1)
    for i in range(bottom.size):
        kept = scale if draws[i] >= p else scale * 0
        mask[i] = kept
        top[i] = bottom[i] * kept


@numba.njit(parallel=True, cache=True)
def average_pass(average, param, weight):
    """``average += weight * (param - average)``, in place, in one pass: one step of the Solver's moving average of
    a parameter (``weight = 1 - decay``), over flat arrays of one float type."""
    for i in numba.prange(average.size):
        average[i] += weight * (param[i] - average[i])
