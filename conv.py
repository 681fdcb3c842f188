"""A small convolutional network in NumPy, the teacher of the MLP: its layers, then the network that stacks them.

The layers speak ``modules.py``'s language (``forward(bottom) -> top``, ``backward(top_diff) -> bottom_diff``, each
parameter beside its gradient, ``trainable()``), on images held channels last: ``bottom`` (N, H, W, C), N images of
H x W pixels with C channels each. In that layout a pixel's channels are contiguous, so ``modules.BatchNorm`` and
``modules.ReLU`` serve a convolution's output as they are, on its (N * H * W, C) view (batch normalisation per
channel over the batch and every pixel: spatial batch normalisation), and a convolution is one matrix product:
``im2col`` copies each pixel's k x k window into a row (M = N * H * W rows of k * k * C values) and the row times the
filters (k * k * C, F) is the pixel's output. Each layer's ``reference_forward`` and ``reference_backward`` are the
formulas in plain NumPy, what to read; ``forward`` and ``backward``, what training runs, compute the same with the
compiled window copies of this module (``tests/test_conv.py`` holds the two together, and both to finite
differences).

The network is a teacher for the MLP (the soft targets of distillation), not a second study: ``CNN`` builds two
stages of 2 x (conv 3x3 - BatchNorm - ReLU) and a 2x2 max pool, then a dense head, and trains one batch at a time
(``train_step``) with ``optimizers.py``'s rules; the run around it belongs to its job.
"""

import math
from itertools import pairwise

import numba
import numpy as np

from doors import check_data, check_rows
from modules import FC, MLP, BatchNorm, Dropout, Layer, ReLU, Softmax
from optimizers import make_optimizer
from solver import Solver

EVAL_IMAGES = 256  # images a measuring pass takes at once: its windows' columns stay in a few hundred MB


class Conv2D(Layer):
    """2-D convolution with ``F`` filters of k x k x C, stride 1, zero padding k // 2 ("same": the output keeps the
    input's height and width): ``top[n, h, w, f] = sum over i, j, c of padded[n, h + i, w + j, c] * W[i, j, c, f] +
    b[f]``. Weights are He-initialised (std ``sqrt(2 / (k * k * C))``), biases zero; ``bias=False`` leaves ``b`` out,
    for a convolution followed by batch normalisation, which subtracts any bias again. With ``propagate_down=False``
    the layer skips its bottom diff, as ``FC`` does for a first layer.

    Forward is one product, ``im2col(bottom) @ W.reshape(k * k * C, F)``, whose (M, k * k * C) window copy is kept
    for the weights' gradient. Backward needs no ``col2im`` scatter: the gradient of a "same" convolution with respect
    to its input is itself a "same" convolution, of ``top_diff`` with the filters mirrored in space and their
    channels swapped (``W[::-1, ::-1].swapaxes(2, 3)``), so the bottom diff is another window copy (a gather) and
    another product shaped like the forward's.
    """

    cached = ("cols", "diff_cols")

    def __init__(self, in_channels, out_channels, kernel_size=3, rng=None, dtype=np.float32, bias=True,
                 propagate_down=True):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (a 'same' convolution pads k // 2 each side), got {kernel_size}")
        rng = np.random.default_rng() if rng is None else rng
        std = np.sqrt(2.0 / (kernel_size * kernel_size * in_channels))
        shape = (kernel_size, kernel_size, in_channels, out_channels)
        self.W = (rng.standard_normal(shape) * std).astype(dtype)
        self.grad_W = np.zeros_like(self.W)
        self.b, self.grad_b = (np.zeros(out_channels, dtype=dtype), np.zeros(out_channels, dtype=dtype)) if bias else \
            (None, None)
        self.propagate_down = propagate_down
        self.cols = self.diff_cols = None

    @property
    def kernel_size(self):
        return self.W.shape[0]

    def reference_forward(self, bottom):
        """bottom (N, H, W, C) -> top (N, H, W, F)."""
        self.cols = reference_im2col(bottom, self.kernel_size)
        return self.product(self.cols, self.W, bottom.shape[:3], self.b)

    def reference_backward(self, top_diff):
        """top_diff (N, H, W, F) -> bottom_diff (N, H, W, C), or None when ``propagate_down`` is off. Fills
        ``grad_W`` (k, k, C, F) and ``grad_b`` (F,), summed over the batch; the bottom diff is the columns' gradient
        scattered back to the pixels each window came from (``reference_col2im``)."""
        diff = self.fill_gradients(top_diff)
        if not self.propagate_down:
            return None
        cols_diff = diff @ self.W.reshape(-1, self.W.shape[3]).T
        return reference_col2im(cols_diff, (*top_diff.shape[:3], self.W.shape[2]), self.kernel_size)

    def forward(self, bottom):
        """``reference_forward`` with the compiled window copy, into the last batch's columns."""
        self.cols = im2col(bottom, self.kernel_size, reuse=self.cols)
        return self.product(self.cols, self.W, bottom.shape[:3], self.b)

    def backward(self, top_diff):
        """``reference_backward``'s gradients; the bottom diff by the mirrored filters' convolution (a gather and a
        product, see the class), not by a scatter."""
        self.fill_gradients(top_diff)
        if not self.propagate_down:
            return None
        mirrored = np.ascontiguousarray(self.W[::-1, ::-1].swapaxes(2, 3))
        self.diff_cols = im2col(top_diff, self.kernel_size, reuse=self.diff_cols)
        return self.product(self.diff_cols, mirrored, top_diff.shape[:3])

    @staticmethod
    def product(cols, W, pixels, b=None):
        """cols (M, k * k * C) @ W (k, k, C, F) + b -> (N, H, W, F), ``pixels`` being (N, H, W)."""
        top = cols @ W.reshape(-1, W.shape[3])
        if b is not None:
            top += b
        return top.reshape(*pixels, W.shape[3])

    def fill_gradients(self, top_diff):
        """Fill ``grad_W`` and ``grad_b`` from ``top_diff`` and the cached columns; returns top_diff as (M, F)."""
        diff = top_diff.reshape(-1, top_diff.shape[3])
        np.matmul(self.cols.T, diff, out=self.grad_W.reshape(-1, diff.shape[1]))
        if self.b is not None:
            np.sum(diff, axis=0, out=self.grad_b)
        return diff

    def trainable(self):
        """Each parameter beside its gradient, named apart from an FC's (``conv_W``, ``conv_b``)."""
        return {"conv_W": (self.W, self.grad_W), **({"conv_b": (self.b, self.grad_b)} if self.b is not None else {})}

    def __repr__(self):
        k, _, c, f = self.W.shape
        return f"Conv2D({c}, {f}, {k}x{k})"


def reference_im2col(images, k):
    """images (N, H, W, C) -> cols (N * H * W, k * k * C): row ``(n, h, w)`` holds the k x k window centred on pixel
    (h, w), zero-padded at the borders, window row by window row, each pixel's C channels together."""
    n, height, width, c = images.shape
    p = k // 2
    padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    cols = np.empty((n, height, width, k, k, c), dtype=images.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j, :] = padded[:, i:i + height, j:j + width, :]
    return cols.reshape(n * height * width, k * k * c)


def reference_col2im(cols, shape, k):
    """The adjoint of ``reference_im2col``: cols (N * H * W, k * k * C) -> images ``shape`` (N, H, W, C), each value
    added to the pixel its window position came from (values that came from the padding are dropped)."""
    n, height, width, c = shape
    p = k // 2
    padded = np.zeros((n, height + 2 * p, width + 2 * p, c), dtype=cols.dtype)
    windows = cols.reshape(n, height, width, k, k, c)
    for i in range(k):
        for j in range(k):
            padded[:, i:i + height, j:j + width, :] += windows[:, :, :, i, j, :]
    return padded[:, p:p + height, p:p + width, :]


def im2col(images, k, reuse=None):
    """``reference_im2col`` by a compiled copy, into ``reuse`` when it has the columns' shape and type: the columns of
    a batch are the largest arrays of training (115 MB for 32 channels of 28 x 28 in a batch of 128), and a fresh
    array that size costs the operating system a page fault every 4 kB."""
    n, height, width, c = images.shape
    shape = (n * height * width, k * k * c)
    fits = reuse is not None and reuse.shape == shape and reuse.dtype == images.dtype
    cols = reuse if fits else np.empty(shape, dtype=images.dtype)
    window_copy(np.ascontiguousarray(images), k, cols)
    return cols


@numba.njit(cache=True)
def window_copy(images, k, cols):
    """Fills ``cols`` as ``reference_im2col`` does. Each image is first copied into a zero-bordered scratch image
    (padded by k // 2 on each side, small enough to stay in cache), where a window row of pixel (h, w) is the k pixels
    from (h + i, w), k * C values contiguous in both arrays: no padded copy of the whole batch."""
    n, height, width, c = images.shape
    p = k // 2
    padded = np.zeros((height + 2 * p, (width + 2 * p) * c), dtype=images.dtype)
    run = k * c
    row = 0
    for image in range(n):
        for h in range(height):
            padded[p + h, p * c:(p + width) * c] = images[image, h].reshape(-1)
        for h in range(height):
            for w in range(width):
                for i in range(k):
                    source = padded[h + i]
                    for q in range(run):
                        cols[row, i * run + q] = source[w * c + q]
                row += 1


class MaxPool(Layer):
    """2x2 max pooling, stride 2: bottom (N, H, W, C) -> top (N, H / 2, W / 2, C), each output the largest of its
    window's four inputs (H and W even). The gradient goes to that input alone; in a tie, to the first in reading
    order, as ``argmax`` picks it."""

    cached = ("argmax", "bottom_shape")

    @staticmethod
    def windows(bottom):
        """bottom (N, H, W, C) -> (N, H / 2, W / 2, C, 4): each window's inputs in reading order."""
        n, height, width, c = bottom.shape
        if height % 2 or width % 2:
            raise ValueError(f"2x2 pooling needs an even height and width, got {height} x {width}")
        return bottom.reshape(n, height // 2, 2, width // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(
            n, height // 2, width // 2, c, 4)

    def reference_forward(self, bottom):
        windows = self.windows(bottom)
        self.argmax, self.bottom_shape = windows.argmax(axis=-1), bottom.shape
        return np.take_along_axis(windows, self.argmax[..., None], axis=-1)[..., 0]

    def reference_backward(self, top_diff):
        """top_diff (N, H / 2, W / 2, C) -> bottom_diff (N, H, W, C)."""
        n, height, width, c = self.bottom_shape
        windows = np.zeros((*top_diff.shape, 4), dtype=top_diff.dtype)
        np.put_along_axis(windows, self.argmax[..., None], top_diff[..., None], axis=-1)
        return windows.reshape(n, height // 2, width // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(
            self.bottom_shape)

    def forward(self, bottom):
        """``reference_forward`` in one compiled pass."""
        self.windows(bottom[:1])  # the shape's check
        n, height, width, c = self.bottom_shape = bottom.shape
        top = np.empty((n, height // 2, width // 2, c), dtype=bottom.dtype)
        self.argmax = np.empty(top.shape, dtype=np.uint8)
        pool_pass(np.ascontiguousarray(bottom), top, self.argmax)
        return top

    def backward(self, top_diff):
        """``reference_backward`` in one compiled pass."""
        bottom_diff = np.empty(self.bottom_shape, dtype=top_diff.dtype)
        unpool_pass(np.ascontiguousarray(top_diff), self.argmax, bottom_diff)
        return bottom_diff

    def __repr__(self):
        return "MaxPool(2x2)"


@numba.njit(cache=True)
def pool_pass(bottom, top, argmax):
    """Fills ``top`` with each 2x2 window's maximum and ``argmax`` with its place (0-3 in reading order; in a tie the
    first), a pixel's channels in the inner loop, where they are contiguous."""
    n, height, width, c = top.shape
    for image in range(n):
        for h in range(height):
            for w in range(width):
                for channel in range(c):
                    top[image, h, w, channel], argmax[image, h, w, channel] = bottom[image, 2 * h, 2 * w, channel], 0
                for place in range(1, 4):
                    for channel in range(c):
                        value = bottom[image, 2 * h + place // 2, 2 * w + place % 2, channel]
                        if value > top[image, h, w, channel]:
                            top[image, h, w, channel], argmax[image, h, w, channel] = value, place


@numba.njit(cache=True)
def unpool_pass(top_diff, argmax, bottom_diff):
    """Fills ``bottom_diff`` with each output's gradient at its window's ``argmax`` and zeros elsewhere."""
    n, height, width, c = top_diff.shape
    for image in range(n):
        for h in range(height):
            for w in range(width):
                for place in range(4):
                    for channel in range(c):
                        chosen = argmax[image, h, w, channel] == place
                        bottom_diff[image, 2 * h + place // 2, 2 * w + place % 2, channel] = \
                            top_diff[image, h, w, channel] if chosen else 0


class Flatten(Layer):
    """bottom (N, H, W, C) -> top (N, H * W * C), each image's values in memory order; backward reshapes back."""

    cached = ("bottom_shape",)

    def forward(self, bottom):
        self.bottom_shape = bottom.shape
        return bottom.reshape(len(bottom), -1)

    def backward(self, top_diff):
        return top_diff.reshape(self.bottom_shape)


def channel_view(layer, method, array):
    """``method(array)`` for a layer of the (rows, features) world, on a (N, H, W, C) array seen as (N * H * W, C):
    how ``modules.BatchNorm`` normalises each channel over the batch and every pixel. Other layers get the array."""
    if isinstance(layer, BatchNorm) and array.ndim == 4:
        return method(array.reshape(-1, array.shape[3])).reshape(array.shape)
    return method(array)


class CNN(MLP):
    """A small CNN for square grey images given as rows (N, side * side), the MLP's input, trained, saved and read
    back as an ``MLP`` is (the Solver runs it, ``save_param`` and ``from_file`` keep it, ``study.records`` records
    it): for each width in ``channels``, 2 x (Conv2D 3x3 - BatchNorm - ReLU), then MaxPool 2x2; then Flatten and the
    dense head of ``layers`` (``[784, 256, 10]``: the input's size, the hidden widths, the classes) as the MLP builds
    it, with ``BatchNorm`` (``batch_norm``) and ``Dropout`` (``dropout``), and Softmax. Every other argument is the
    MLP's. The convolutions' parameters are named ``conv_W1``, ``conv_b1``, ...; the head's and the batch
    normalisations' as the MLP names its own. The update rule decays every weight array (the convolutions' too);
    ``objective``'s L2 term, for SGD, counts the head's FC weights only."""

    def __init__(self, layers=(784, 256, 10), channels=(32, 64), **settings):
        self.channels = [int(width) for width in channels]
        side = math.isqrt(int(layers[0]))
        if not self.channels or side * side != layers[0] or side % 2 ** len(self.channels):
            raise ValueError(f"a CNN takes square images whose side halves once per stage ({len(self.channels)} "
                             f"stages of channels {self.channels}); got {layers[0]} inputs")
        super().__init__(layers, **settings)

    @property
    def side(self):
        return math.isqrt(self.layers[0])

    def init_model(self):
        """Build ``self.net`` (see the class) with freshly initialised weights, and start a new run, as
        ``MLP.init_model`` does."""
        self.rng = np.random.default_rng(self.seed)
        self.optimizer = make_optimizer(self.optimizer_spec)
        self.data_range = None
        self.net, width = [], 1
        for stage in self.channels:
            for _ in range(2):
                self.net += [Conv2D(width, stage, rng=self.rng, dtype=self.dtype, bias=False,
                                    propagate_down=bool(self.net)),
                             BatchNorm(stage, dtype=self.dtype), ReLU()]
                width = stage
            self.net.append(MaxPool())
        self.net.append(Flatten())
        sizes = [width * (self.side // 2 ** len(self.channels)) ** 2, *self.layers[1:]]
        for i, (fan_in, fan_out) in enumerate(pairwise(sizes)):
            self.net.append(FC(fan_in, fan_out, rng=self.rng, dtype=self.dtype, weight_init=self.weight_init))
            if i < len(sizes) - 2:
                self.net += [BatchNorm(fan_out, dtype=self.dtype)] if self.batch_norm else []
                self.net += [ReLU(), *([Dropout(self.dropout, rng=self.rng)] if self.dropout else [])]
        self.net.append(Softmax())
        self.solver = Solver(self)

    def forward(self, X, save_activations=False, training=False):
        """X (N, side * side) -> probabilities (N, C), through images (N, side, side, 1); with ``save_activations``,
        ``(probs, activations)`` as ``MLP.forward`` gives them."""
        top, activations = X.reshape(-1, self.side, self.side, 1), []
        for layer in self.net:
            layer.training = training
            top = channel_view(layer, layer.forward, top)
            if save_activations:
                activations.append(top)
        return (top, activations) if save_activations else top

    def backward(self, y):
        diff = self.softmax.backward(y, self.label_smoothing)
        for layer in reversed(self.net[:-1]):
            diff = channel_view(layer, layer.backward, diff)

    def measure(self, X, y, dtype=None):
        """``MLP.measure`` in the model's own dtype (a float64 pass would cost four times a float32 one for nothing a
        teacher needs), in chunks of ``EVAL_IMAGES`` images, whose windows stay small."""
        correct, loss_sum = 0, 0.0
        for start in range(0, len(X), EVAL_IMAGES):
            labels = y[start:start + EVAL_IMAGES]
            probs = self.forward(X[start:start + EVAL_IMAGES])
            correct += int(np.count_nonzero(probs.argmax(axis=1) == labels))
            loss_sum += float(self.softmax.cross_entropy(labels, reduction="none").sum(dtype=np.float64))
        return correct / len(X), loss_sum / len(X)

    def probabilities(self, X):
        """X (N, side * side) -> probabilities (N, C) outside training, ``EVAL_IMAGES`` images at a time."""
        X, _ = check_rows(X, self, "prediction", self.data_range)
        return np.concatenate([self.forward(X[start:start + EVAL_IMAGES]) for start in range(0, len(X), EVAL_IMAGES)])

    def predict(self, X):
        return self.probabilities(X).argmax(axis=1)

    def evaluate(self, X, y):
        X, y, _ = check_data(X, y, self, "evaluation", self.data_range)
        return self.measure(X, y)

    def config(self):
        return dict(super().config(), channels=self.channels)

    def __repr__(self):
        return f"CNN(channels={self.channels}, layers={self.layers}): " + " -> ".join(map(repr, self.net))
