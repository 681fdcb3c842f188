"""A multilayer perceptron in NumPy, written to be read: the layers, then the network that stacks them.

Every layer speaks Caffe's language (see ``Layer``); in CS231n's words, ``bottom`` = ``x``, the layer's input; ``top``
= ``out``, its output; ``top_diff`` = ``dout``, the gradient of the loss with respect to ``out``; ``bottom_diff`` =
``dx``. Each layer keeps each parameter beside its gradient (``W`` and ``grad_W``, ``b`` and ``grad_b``). Shapes use
``N`` for the batch size, ``D`` for a layer's input features, ``H`` for its output features and ``C`` for the number
of classes; everything runs on whole batches. Training (epochs, learning-rate policies, checkpoints) is in
``solver.py``, the update rules in ``optimizers.py``.
"""

import json
from itertools import pairwise

import numpy as np
import pandas as pd

import kernels
from doors import check_data, check_parameters, check_rows, check_run, check_settings
from fileio import read_archive, read_model, write_model
from optimizers import make_optimizer
from solver import Solver

EVAL_CHUNK_ROWS = 8192  # rows per chunk in evaluate(): ~8 MB per hidden layer of 256 float32 units
# evaluate() and predict() measure a trained model in float64, whatever its dtype: BLAS kernels sum a float32 product
# in different orders (OpenBLAS's Haswell and SkylakeX kernels do), which moves a logit by a rounding and flips the
# odd near-tie prediction among 10,000 images; in float64 a measurement of saved weights is the same on any machine.
MEASURE_DTYPE = np.float64


class Layer:
    """What every layer shares.

    ``forward(bottom) -> top`` computes the layer's output from its input, (N, D) -> (N, H), and keeps what its
    backward pass will need under the names listed in ``cached``. ``backward(top_diff) -> bottom_diff`` turns the
    gradient of the loss with respect to the output into the gradient with respect to the input, and fills the
    gradients of the layer's own parameters on the way. The last layer, ``Softmax``, is fused with the loss: its
    ``backward`` takes the labels instead of a top diff, as Caffe's ``SoftmaxWithLoss`` takes them as a second bottom.

    ``training`` is set by the model around each forward pass; ``Dropout`` and ``BatchNorm`` behave differently in
    training.
    ``clear()`` lets the cached arrays go (a trained model need not carry its last batch around).
    """

    cached = ()
    training = False

    def clear(self):
        for name in self.cached:
            setattr(self, name, None)

    def __repr__(self):
        return f"{type(self).__name__}()"


class FC(Layer):
    """Fully connected layer: ``top = bottom @ W + b``.

    Weights are drawn from a zero-mean normal distribution whose spread keeps the variance of the signal steady from
    layer to layer: ``"he"`` (He et al., 2015), std ``sqrt(2 / D)``, for ReLU, which zeroes half of its input;
    ``"xavier"`` (Glorot and Bengio, 2010), std ``sqrt(2 / (D + H))``, for Sigmoid and Tanh, close to linear
    around 0, which need the variance kept equal both forward and backward. Biases start at zero.

    With ``propagate_down=False`` the layer skips its bottom diff, as Caffe does for a first layer whose input is
    the data: nobody reads that gradient, and it is the most expensive product of the layer.
    """

    cached = ("bottom",)

    def __init__(self, in_features, out_features, rng=None, dtype=np.float32, weight_init="he", propagate_down=True):
        rng = np.random.default_rng() if rng is None else rng
        if weight_init == "he":
            std = np.sqrt(2.0 / in_features)
        elif weight_init == "xavier":
            std = np.sqrt(2.0 / (in_features + out_features))
        else:
            raise ValueError(f"unknown weight_init {weight_init!r}: use 'he' or 'xavier'")
        self.W = (rng.standard_normal((in_features, out_features)) * std).astype(dtype)
        self.b = np.zeros(out_features, dtype=dtype)
        self.grad_W = np.zeros_like(self.W)
        self.grad_b = np.zeros_like(self.b)
        self.propagate_down = propagate_down
        self.bottom = None

    def forward(self, bottom):
        """bottom (N, D) -> top (N, H)."""
        self.bottom = bottom
        top = bottom @ self.W
        top += self.b
        return top

    def backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, D), or None when ``propagate_down`` is off.

        Fills ``grad_W`` (D, H) and ``grad_b`` (H,) with the gradients summed over the batch.
        """
        np.matmul(self.bottom.T, top_diff, out=self.grad_W)
        np.sum(top_diff, axis=0, out=self.grad_b)
        if not self.propagate_down:
            return None
        return top_diff @ self.W.T

    def trainable(self):
        """Each parameter beside its gradient, under its name: what the update rule steps."""
        return {"W": (self.W, self.grad_W), "b": (self.b, self.grad_b)}

    def __repr__(self):
        return f"FC({self.W.shape[0]}, {self.W.shape[1]})"


class BatchNorm(Layer):
    """Batch normalisation (Ioffe and Szegedy, 2015): ``top = gamma * x_hat + beta``, ``x_hat = (bottom - mean) /
    sqrt(var + eps)`` with the mean and (biased) variance of each feature over the batch in training, and of its
    running averages outside training (which move ``momentum`` of the way towards each batch's; the variance's
    unbiased), so that a prediction does not depend on the rest of its batch. ``state``: saved, not trained. A batch
    of one row has no variance (its output would be ``beta`` whatever the input): the Solver never trains on one
    (``doors.check_batch_norm_rows``; a trailing batch of one row is skipped).
    ``reference_forward`` and ``reference_backward`` are the formulas, what to read; ``forward`` and ``backward``, what
    training runs, compute the same arithmetic in fewer passes and equal them bit for bit, as the optimizers do."""

    cached = ("x_hat", "inv_std")
    state = ("running_mean", "running_var")

    def __init__(self, features, dtype=np.float32, momentum=0.1, eps=1e-5):
        self.gamma, self.beta = np.ones(features, dtype=dtype), np.zeros(features, dtype=dtype)
        self.grad_gamma, self.grad_beta = np.zeros_like(self.gamma), np.zeros_like(self.beta)
        self.running_mean, self.running_var = np.zeros_like(self.beta), np.ones_like(self.gamma)
        self.momentum, self.eps = momentum, eps
        self.x_hat = self.inv_std = None

    def reference_forward(self, bottom):
        """bottom (N, H) -> top (N, H): the formulas, one array operation a line."""
        if self.training:
            mean = bottom.mean(axis=0)
            centered = bottom - mean
            var = np.mean(centered * centered, axis=0)
            self.track(mean, var, len(bottom))
        else:
            centered, var = bottom - self.running_mean, self.running_var
        self.inv_std = self.inverse_std(var, bottom.dtype)
        self.x_hat = centered * self.inv_std
        return self.x_hat * self.gamma + self.beta

    def reference_backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, H); fills ``grad_gamma`` and ``grad_beta`` (H,). After a training pass
        the mean and variance depend on every row, and the full derivative carries that: ``gamma * inv_std / N * (N *
        top_diff - sum(top_diff) - x_hat * sum(top_diff * x_hat))``; after an evaluation pass, an affine map's."""
        np.sum(top_diff, axis=0, out=self.grad_beta)
        np.sum(top_diff * self.x_hat, axis=0, out=self.grad_gamma)
        scale = self.gamma * self.inv_std
        if not self.training:
            return top_diff * scale
        n = len(top_diff)
        return (top_diff * n - self.grad_beta - self.x_hat * self.grad_gamma) * (scale / n)

    def forward(self, bottom):
        """``reference_forward``'s arithmetic in fewer passes over the batch (``kernels.py``): three in training, one
        outside it (the Solver's validation checks, every measurement)."""
        if self.training:
            mean, var = kernels.batch_moments(bottom)
            self.track(mean, var, len(bottom))
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = self.inverse_std(var, bottom.dtype)
        self.x_hat, top = np.empty_like(bottom), np.empty_like(bottom)
        kernels.normalise(bottom, mean, self.inv_std, self.gamma, self.beta, self.x_hat, top)
        return top

    def backward(self, top_diff):
        """``reference_backward``'s arithmetic in two passes over the batch (``kernels.py``)."""
        if not self.training:
            return self.reference_backward(top_diff)
        n, bottom_diff = len(top_diff), np.empty_like(top_diff)
        kernels.batchnorm_backward(top_diff, self.x_hat, self.gamma * self.inv_std / n, top_diff.dtype.type(n),
                                   self.grad_gamma, self.grad_beta, bottom_diff)
        return bottom_diff

    def track(self, mean, var, n):
        """Move the running averages ``momentum`` of the way towards this batch's mean and unbiased variance."""
        self.running_mean += self.momentum * (mean - self.running_mean)
        self.running_var += self.momentum * (var * (n / max(n - 1, 1)) - self.running_var)

    def inverse_std(self, var, dtype):
        return (1 / np.sqrt(var + self.eps)).astype(dtype, copy=False)

    def trainable(self):
        return {"gamma": (self.gamma, self.grad_gamma), "beta": (self.beta, self.grad_beta)}

    def __repr__(self):
        return f"BatchNorm({len(self.gamma)})"


class Activation(Layer):
    """An elementwise nonlinearity: ``forward`` maps bottom (N, H) to top (N, H), ``backward`` top_diff (N, H) to
    bottom_diff (N, H). Each derivative below is computed from the output, which is what the layer keeps."""

    cached = ("top",)


class ReLU(Activation):
    """``top = max(bottom, 0)``; the gradient passes where the input was positive."""

    def forward(self, bottom):
        self.top = np.maximum(bottom, 0)
        return self.top

    def backward(self, top_diff):
        return top_diff * (self.top > 0)


class Sigmoid(Activation):
    """``top = 1 / (1 + exp(-bottom))``, with derivative ``top * (1 - top)``."""

    def forward(self, bottom):
        # The tanh form never overflows, unlike exp(-bottom) for large negative inputs.
        self.top = 0.5 * (1 + np.tanh(0.5 * bottom))
        return self.top

    def backward(self, top_diff):
        return top_diff * self.top * (1 - self.top)


class Tanh(Activation):
    """``top = tanh(bottom)``, with derivative ``1 - top**2``."""

    def forward(self, bottom):
        self.top = np.tanh(bottom)
        return self.top

    def backward(self, top_diff):
        return top_diff * (1 - self.top * self.top)


class Softmax(Layer):
    """Softmax over classes, fused with the mean cross-entropy loss: ``backward`` takes the labels, since the gradient
    with respect to the logits is simply ``(probs - onehot(labels)) / N``, cheaper and more accurate than chaining
    the softmax Jacobian with the gradient of the logarithm."""

    cached = ("shifted_logits", "log_sum_exp", "probs")

    def forward(self, logits):
        """logits (N, C) -> probabilities (N, C). Subtracting the row maximum keeps ``exp`` from overflowing."""
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        self.shifted_logits = shifted
        self.log_sum_exp = np.log(sum_exp)
        self.probs = exp / sum_exp
        return self.probs

    def cross_entropy(self, labels, reduction="mean", smoothing=0.0):
        """Cross-entropy of the last forward pass against labels (N,): a float, or (N,) with ``reduction="none"``.

        Computed as ``log(sum(exp(z))) - z[label]`` on the shifted logits ``z``, so it stays finite even where a
        probability has underflowed to 0. With label ``smoothing`` ε the target puts ``1 - ε`` on the label and
        spreads ε evenly over the C classes: the loss becomes ``log(sum(exp(z))) - (1 - ε) z[label] - ε mean(z)``.
        ``labels`` may also be target distributions (N, C), a teacher's soft targets: ``log(sum(exp(z))) - sum(t
        z)``, smoothed the same way.
        """
        if labels.ndim == 2:
            losses = self.log_sum_exp[:, 0] - np.einsum("nc,nc->n", smoothed(labels, smoothing), self.shifted_logits)
            return losses if reduction == "none" else float(losses.mean())
        picked = self.shifted_logits[np.arange(len(labels)), labels]
        losses = self.log_sum_exp[:, 0] - picked
        if smoothing:
            losses = losses - smoothing * (self.shifted_logits.mean(axis=1) - picked)
        return losses if reduction == "none" else float(losses.mean())

    def backward(self, labels, smoothing=0.0):
        """labels (N,) -> bottom_diff (N, C), the gradient of the mean cross-entropy with respect to the logits:
        ``(probs - target) / N``, the target being the one-hot label, or with ``smoothing`` ε, ``(1 - ε) onehot + ε /
        C``; for target distributions (N, C), ``(probs - targets) / N``, smoothed the same way."""
        n = len(labels)
        if labels.ndim == 2:
            return (self.probs - smoothed(labels, smoothing)) / n
        bottom_diff = self.probs - smoothing / self.probs.shape[1] if smoothing else self.probs.copy()
        bottom_diff[np.arange(n), labels] -= 1 - smoothing
        bottom_diff /= n
        return bottom_diff


def smoothed(targets, smoothing):
    """Target distributions (N, C) with label ``smoothing`` ε: ``(1 - ε) * targets + ε / C``."""
    return targets if not smoothing else (1 - smoothing) * targets + smoothing / targets.shape[1]


class Dropout(Layer):
    """Inverted dropout: in training, each input is zeroed with probability ``p`` and the survivors are scaled by
    ``1 / (1 - p)``, so the expected output equals the input; outside training, the identity. The masks come from
    ``rng``, the model's seeded generator, so a seeded run is repeatable."""

    cached = ("mask",)

    def __init__(self, p, rng=None):
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p
        self.rng = np.random.default_rng() if rng is None else rng
        self.mask = None

    def reference_forward(self, bottom):
        """bottom (N, H) -> top (N, H): the formula, one array operation a line."""
        if not self.training:
            self.mask = None
            return bottom
        keep = self.rng.random(bottom.shape, dtype=np.float32) >= self.p
        self.mask = keep.astype(bottom.dtype) / bottom.dtype.type(1 - self.p)
        return bottom * self.mask

    def forward(self, bottom):
        """``reference_forward``'s arithmetic, from the same draws, in one pass (``kernels.py``): what training runs."""
        if not self.training:
            return self.reference_forward(bottom)
        draws, kind = self.rng.random(bottom.shape, dtype=np.float32), bottom.dtype.type
        self.mask, top = np.empty_like(bottom), np.empty_like(bottom)
        kernels.dropout_pass(bottom, draws, np.float32(self.p), kind(1) / kind(1 - self.p), self.mask, top)
        return top

    def backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, H): the gradient flows where the mask let the input through."""
        return top_diff if self.mask is None else top_diff * self.mask

    def __repr__(self):
        return f"Dropout({self.p})"


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
WEIGHT_INIT = {"relu": "he", "sigmoid": "xavier", "tanh": "xavier"}


class MLP:
    """A multilayer perceptron trained with mini-batch gradient descent, a learning-rate schedule and L2.

    ``layers`` lists the sizes from input to output, e.g. ``[784, 256, 128, 10]``: an ``FC`` for each pair of adjacent
    sizes, the activation after every ``FC`` but the last (with ``batch_norm``, a ``BatchNorm`` between the two;
    then ``Dropout`` when ``dropout > 0``), then ``Softmax``. ``augment_shift`` and ``augment_flip`` make the Solver
    move and mirror the (square) images of every training batch; ``input_mean`` and ``input_std`` standardise the
    input, ``(X - input_mean) / input_std``, before the first layer (the defaults leave it as it is).
    Training minimises ``mean cross-entropy + (L2_lambda / 2) * sum of ||W||^2`` over the FC weights (the
    cross-entropy against smoothed labels with ``label_smoothing``, see ``Softmax``); with Adam, ``L2_lambda`` is a
    decoupled weight decay instead. The training settings (``optimizer``, ``lr_schedule``, ``decay_epochs``,
    ``warmup_steps``, ``patience``, ``weight_average``, ...) are explained in ``solver.py``. All randomness
    (initialisation, shuffling, dropout, augmentation) comes from one generator seeded with ``seed``, so identical
    seeds give identical runs.
    """

    def __init__(self, layers, lr=0.1, activation="relu", max_epoch=40, batch_size=100, L2_lambda=0.0,
                 decay_factor=0.95, decay_steps=500, print_log=True, print_iter=100, seed=0, dtype=np.float32,
                 optimizer="sgd", dropout=0.0, lr_schedule="step", warmup_steps=0, weight_init=None, patience=None,
                 batch_norm=False, augment_shift=0, augment_flip=False, label_smoothing=0.0, weight_average=0.0,
                 decay_epochs=(), input_mean=0.0, input_std=1.0):
        check_settings(locals())  # every argument, under its own name
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {sorted(ACTIVATIONS)}")
        # Plain Python values, even when given NumPy scalars (read from a DataFrame, say): they must go into JSON when
        # the model is saved, and a float64 scalar times a float32 array is a float64 array: every update would run
        # in float64 at a fraction of the speed.
        self.layers = [int(size) for size in layers]
        self.lr, self.L2_lambda, self.decay_factor = float(lr), float(L2_lambda), float(decay_factor)
        self.max_epoch, self.batch_size, self.decay_steps = int(max_epoch), int(batch_size), int(decay_steps)
        self.print_iter, self.seed, self.warmup_steps = int(print_iter), int(seed), int(warmup_steps)
        self.patience = None if patience is None else int(patience)
        self.activation, self.lr_schedule, self.print_log = str(activation), str(lr_schedule), bool(print_log)
        self.dtype, self.optimizer_spec, self.dropout = np.dtype(dtype), optimizer, float(dropout)
        self.weight_init = str(weight_init or WEIGHT_INIT[activation])
        self.batch_norm, self.augment_flip = bool(batch_norm), bool(augment_flip)
        self.augment_shift, self.label_smoothing = int(augment_shift), float(label_smoothing)
        self.weight_average, self.decay_epochs = float(weight_average), [int(epoch) for epoch in decay_epochs]
        self.input_mean, self.input_std = float(input_mean), float(input_std)
        self.init_model()

    def init_model(self):
        """Build ``self.net``, the list of layer objects in order, with freshly initialised weights.

        This also starts a new run: a fresh generator from ``seed``, a fresh optimizer, a fresh ``Solver``.
        """
        self.rng = np.random.default_rng(self.seed)
        self.optimizer = make_optimizer(self.optimizer_spec)
        self.data_range = None  # (min, max) of the data it was trained on: evaluate and predict refuse data far outside
        self.net = []
        n_fc = len(self.layers) - 1
        for i, (fan_in, fan_out) in enumerate(pairwise(self.layers)):
            self.net.append(FC(fan_in, fan_out, rng=self.rng, dtype=self.dtype, weight_init=self.weight_init,
                               propagate_down=i > 0))
            if i < n_fc - 1:
                if self.batch_norm:
                    self.net.append(BatchNorm(fan_out, dtype=self.dtype))
                self.net.append(ACTIVATIONS[self.activation]())
                if self.dropout:
                    self.net.append(Dropout(self.dropout, rng=self.rng))
        self.net.append(Softmax())
        self.solver = Solver(self)

    @property
    def fc_layers(self):
        """The FC layers in order."""
        return [layer for layer in self.net if isinstance(layer, FC)]

    def numbered_layers(self):
        """``(number, layer)`` of the layers with parameters, each kind counted from 1 (``FC`` 1, ``BatchNorm`` 1,
        ``FC`` 2, ...): the number that names their parameters (``W1``, ``gamma1``)."""
        counts = {}
        for layer in self.net:
            if hasattr(layer, "trainable"):
                counts[type(layer)] = counts.get(type(layer), 0) + 1
                yield counts[type(layer)], layer

    @property
    def softmax(self):
        return self.net[-1]

    # Where the run is and what it has reached, as its Solver (solver.py) keeps them, read through the model.
    epoch = property(lambda self: self.solver.epoch)
    iteration = property(lambda self: self.solver.iteration)
    current_lr = property(lambda self: self.solver.current_lr)
    history = property(lambda self: self.solver.history)
    best_val_acc = property(lambda self: self.solver.best_val_acc)
    best_val_loss = property(lambda self: self.solver.best_val_loss)
    best_iteration = property(lambda self: self.solver.best_iteration)
    diverged = property(lambda self: self.solver.diverged)
    stopped_early = property(lambda self: self.solver.stopped_early)
    train_time_s = property(lambda self: self.solver.train_time_s)

    # -- the four steps of learning ---------------------------------------------------------------------------------

    def forward(self, X, save_activations=False, training=False):
        """X (N, D) -> probabilities (N, C); with ``save_activations``, ``(probs, activations)``, every layer's output
        in order (FC1, activation 1, FC2, ..., Softmax). ``training`` switches dropout and batch statistics on."""
        top, activations = X, []
        if (self.input_mean, self.input_std) != (0.0, 1.0):
            top = (X - self.dtype.type(self.input_mean)) * self.dtype.type(1 / self.input_std)
        for layer in self.net:
            layer.training = training
            top = layer.forward(top)
            if save_activations:
                activations.append(top)
        return (top, activations) if save_activations else top

    def backward(self, y):
        """From the last forward pass and its labels y (N,), fill every FC's ``grad_W`` and ``grad_b`` with the
        gradient of the mean cross-entropy (against smoothed labels with ``label_smoothing``); the L2 term is added by
        the update rule (see ``gradients``)."""
        diff = self.softmax.backward(y, self.label_smoothing)
        for layer in reversed(self.net[:-1]):
            diff = layer.backward(diff)

    def update(self, lr):
        """One step of the update rule (``optimizers.py``) from the gradients that ``backward`` left, at learning rate
        ``lr``: in training, the one the schedule gives this batch (``solver.Solver.lr_at``). The rule applies
        ``L2_lambda`` as it steps, to the FC weights only (never to biases, nor to batch normalisation's ``gamma``
        and ``beta``): the gradient of the L2 penalty (SGD, momentum) or AdamW's decay."""
        params = [pair for _, layer in self.numbered_layers() for pair in layer.trainable().values()]
        self.optimizer.step(params, lr, weight_decay=self.L2_lambda)

    @property
    def l2_in_loss(self):
        """The L2 coefficient of the loss: ``L2_lambda``, or 0 when the update rule decays the weights (AdamW)."""
        return 0.0 if self.optimizer.decoupled_weight_decay else self.L2_lambda

    def objective(self, X, y, training=False):
        """The loss that training minimises: mean cross-entropy (against smoothed labels with ``label_smoothing``)
        plus ``(l2_in_loss / 2) * sum of ||W||^2``."""
        self.forward(X, training=training)
        squares = sum(float(np.sum(fc.W * fc.W)) for fc in self.fc_layers)
        return self.softmax.cross_entropy(y, smoothing=self.label_smoothing) + 0.5 * self.l2_in_loss * squares

    def gradients(self, X, y, training=False):
        """The gradient of ``objective(X, y, training)`` with respect to every parameter, as new arrays ``{"W1": ...,
        "b1": ...}``: ``backward``'s, plus ``l2_in_loss * W`` for each weight matrix. Training takes the same step
        without this call: the update rule adds that term as it steps, with no pass of its own."""
        self.forward(X, training=training)
        self.backward(y)
        return {f"{name}{i}": grad + self.l2_in_loss * param if name == "W" else grad.copy()
                for i, layer in self.numbered_layers() for name, (param, grad) in layer.trainable().items()}

    def predict(self, X):
        """X (N, D) -> predicted labels (N,)."""
        X, _ = check_rows(X, self, "prediction", self.data_range)
        return np.concatenate([self.forward(X[start:start + EVAL_CHUNK_ROWS].astype(MEASURE_DTYPE)).argmax(axis=1)
                               for start in range(0, len(X), EVAL_CHUNK_ROWS)])

    def evaluate(self, X, y):
        """(accuracy, loss) on (X, y), where loss is the mean cross-entropy alone, without the L2 term, computed in
        ``MEASURE_DTYPE``; ValueError for data the model cannot use, or far outside the range of its training data
        (see ``doors.check_rows``)."""
        X, y, _ = check_data(X, y, self, "evaluation", self.data_range)
        return self.measure(X, y, MEASURE_DTYPE)

    def measure(self, X, y, dtype=None):
        """``evaluate`` without its checks, for data checked already: in the model's own dtype for the Solver's
        validation set, every few batches, or in ``dtype``; in chunks of ``EVAL_CHUNK_ROWS`` rows, so that memory
        stays small whatever the number of rows."""
        correct, loss_sum = 0, 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is answered below, not warned about
            for start in range(0, len(X), EVAL_CHUNK_ROWS):
                labels = y[start:start + EVAL_CHUNK_ROWS]
                chunk = X[start:start + EVAL_CHUNK_ROWS]
                probs = self.forward(chunk if dtype is None else chunk.astype(dtype))
                correct += int(np.count_nonzero(probs.argmax(axis=1) == labels))
                loss_sum += float(self.softmax.cross_entropy(labels, reduction="none").sum(dtype=np.float64))
        return correct / len(X), loss_sum / len(X)

    def train(self, X_train, y_train, X_val, y_val, save_path=None, epochs=None, checkpoint_path=None, on_epoch=None):
        """Train up to ``max_epoch`` epochs and return the history as a DataFrame: a row every ``print_iter``
        batches with the training numbers since the last row and the whole validation set's. ``y_train`` holds
        labels (N,), or target distributions (N, C) to learn from instead (a teacher's soft targets: distillation);
        the training accuracy then counts the target's most likely class.

        The model ends holding the parameters of best validation accuracy (lower loss breaks ties), written to
        ``save_path`` each time they improve. With no validation set (``X_val`` and ``y_val`` None: a final model
        trained on every training image for a number of epochs chosen before) it ends holding its last parameters,
        or with ``weight_average`` their average. ``epochs`` trains that many more epochs of the same run;
        ``checkpoint_path`` saves the run after every epoch for ``MLP.from_checkpoint``; ``on_epoch(model)`` is called
        after every epoch. With ``batch_norm``, batches must hold at least 2 rows (ValueError for ``batch_size=1`` or
        a training set of one row), and an epoch whose last batch would be a single row ends without it. See
        ``solver.Solver``.
        """
        X_train, y_train, train_range = check_data(X_train, y_train, self, "training", distributions=True)
        if X_val is not None or y_val is not None:
            X_val, y_val, _ = check_data(X_val, y_val, self, "validation", train_range)
        check_run(self, len(X_train), epochs, save_path, checkpoint_path)
        return self.solver.train(X_train, y_train, X_val, y_val, save_path, epochs, checkpoint_path, on_epoch,
                                 train_range)

    # -- parameters on disk -----------------------------------------------------------------------------------------

    def parameters(self):
        """The parameters themselves (not copies), ``{"W1": ..., "b1": ..., "W2": ...}`` in layer order, with batch
        normalisation's ``gamma``, ``beta`` and running averages: everything a prediction needs."""
        return {f"{name}{i}": array for i, layer in self.numbered_layers()
                for name, array in [*((name, pair[0]) for name, pair in layer.trainable().items()),
                                    *((name, getattr(layer, name)) for name in getattr(layer, "state", ()))]}

    def get_parameters(self):
        """A dict of copies of the parameters, in layer order."""
        return {name: array.copy() for name, array in self.parameters().items()}

    def load_param(self, params, source=None):
        """Set the parameters from a dict like ``get_parameters()`` returns; ValueError on the first misfit (see
        ``doors.check_parameters``), naming ``source``, the file they come from, when given."""
        own = self.parameters()
        check_parameters(params, own, source)
        for name, array in params.items():
            own[name][...] = array

    def save_param(self, path):
        """Write the parameters, ``config()`` and the training data's range (once it has trained) to one ``.npz``,
        atomically (``fileio.write_model``)."""
        write_model(path, self.get_parameters(), self.config(), self.data_range)

    def load_model(self, path):
        """Load parameters saved by ``save_param`` into this model, refusing archives of another architecture."""
        config, params, data_range = read_model(path)
        if (config["layers"], config["activation"]) != (self.layers, self.activation):
            raise ValueError(f"{path} holds an MLP({config['layers']}, activation={config['activation']!r}), but this "
                             f"model is MLP({self.layers}, activation={self.activation!r})")
        self.load_param(params, path)
        self.data_range = data_range

    @classmethod
    def from_file(cls, path, **kwargs):
        """A new MLP with the architecture, settings (``kwargs`` override them) and parameters of an archive written
        by ``save_param``; in archives that predate recorded settings, the settings take their defaults."""
        config, params, data_range = read_model(path)
        model = cls(**dict(config, **kwargs))
        model.load_param(params, path)
        model.data_range = data_range
        return model

    @classmethod
    def from_checkpoint(cls, path, print_log=True):
        """The model of a run saved with ``train(..., checkpoint_path=path)``, ready to go on with ``train``. Its
        settings are the run's own: only whether it prints its log can be chosen anew."""
        arrays = read_archive(path, ("config", "run"), "training checkpoint", "train(..., checkpoint_path=...)")
        model = cls(**dict(json.loads(str(arrays["config"])), print_log=print_log))
        model.solver.restore(arrays, path)
        return model

    def config(self):
        """The constructor's arguments as a dict of plain values, enough to rebuild this model: ``MLP(**config)``."""
        return {"layers": self.layers, "lr": self.lr, "activation": self.activation, "max_epoch": self.max_epoch,
                "batch_size": self.batch_size, "L2_lambda": self.L2_lambda, "decay_factor": self.decay_factor,
                "decay_steps": self.decay_steps, "print_iter": self.print_iter, "seed": self.seed,
                "dtype": self.dtype.name, "optimizer": self.optimizer.config(), "dropout": self.dropout,
                "lr_schedule": self.lr_schedule, "warmup_steps": self.warmup_steps, "weight_init": self.weight_init,
                "patience": self.patience, "batch_norm": self.batch_norm, "augment_shift": self.augment_shift,
                "augment_flip": self.augment_flip, "label_smoothing": self.label_smoothing,
                "weight_average": self.weight_average, "decay_epochs": self.decay_epochs,
                "input_mean": self.input_mean, "input_std": self.input_std}

    def __repr__(self):
        return f"MLP({self.layers}, activation={self.activation!r}): " + " -> ".join(map(repr, self.net))

    def summary(self):
        """A DataFrame with one row per layer: its name, output size and parameter count."""
        rows, width = [], self.layers[0]
        for layer in self.net:
            params = sum(pair[0].size for pair in layer.trainable().values()) if hasattr(layer, "trainable") else 0
            width = layer.W.shape[1] if isinstance(layer, FC) else width
            rows.append({"layer": repr(layer), "output_size": width, "parameters": params})
        return pd.DataFrame(rows)

