"""A multilayer perceptron in NumPy, written to be read.

Every layer speaks Caffe's language: ``forward(bottom) -> top`` computes the layer's output from its input, and
``backward(top_diff) -> bottom_diff`` turns the gradient of the loss with respect to the output into the gradient
with respect to the input. A layer with parameters keeps each one beside its gradient under the same name
(``W`` and ``grad_W``, ``b`` and ``grad_b``), so an update rule only has to walk the pairs.

Shapes use ``N`` for the batch size, ``D`` for a layer's input features, ``H`` for its output features and ``C`` for
the number of classes. Everything runs on whole batches with matrix products; nothing loops over samples.
"""

import json
import math
import os
import tempfile
import time
import zipfile
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from optimizers import make_optimizer

EVAL_CHUNK_ROWS = 8192  # rows per chunk in evaluate(): ~8 MB per hidden layer of 256 float32 units


class Layer:
    """What every layer shares: the names of the arrays it keeps from ``forward`` for ``backward``, and ``clear()``,
    which lets them go (a trained model need not carry its last batch around)."""

    cached = ()

    def clear(self):
        for name in self.cached:
            setattr(self, name, None)


class FC(Layer):
    """Fully connected layer: ``top = bottom @ W + b``.

    Weights are drawn from a zero-mean normal distribution whose spread keeps the variance of the signal steady
    from layer to layer:

    - ``"he"`` (He et al., 2015), std ``sqrt(2 / D)``: for ReLU, which zeroes half of its input on average.
    - ``"xavier"`` (Glorot and Bengio, 2010), std ``sqrt(2 / (D + H))``: for Sigmoid and Tanh, which are close to
      linear around 0 and so need the variance kept equal both forward and backward.

    Biases start at zero. With ``propagate_down=False`` the layer skips its bottom diff, as Caffe does for a first
    layer whose input is the data: nobody reads that gradient, and it is the most expensive product of the layer.
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

    def __repr__(self):
        return f"FC({self.W.shape[0]}, {self.W.shape[1]})"


class ReLU(Layer):
    """``top = max(bottom, 0)``; the gradient passes where the input was positive."""

    cached = ("top",)

    def forward(self, bottom):
        """bottom (N, H) -> top (N, H)."""
        self.top = np.maximum(bottom, 0)
        return self.top

    def backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, H)."""
        return top_diff * (self.top > 0)

    def __repr__(self):
        return "ReLU()"


class Sigmoid(Layer):
    """``top = 1 / (1 + exp(-bottom))``, with derivative ``top * (1 - top)``."""

    cached = ("top",)

    def forward(self, bottom):
        """bottom (N, H) -> top (N, H)."""
        # The tanh form never overflows, unlike exp(-bottom) for large negative inputs.
        self.top = 0.5 * (1 + np.tanh(0.5 * bottom))
        return self.top

    def backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, H)."""
        return top_diff * self.top * (1 - self.top)

    def __repr__(self):
        return "Sigmoid()"


class Tanh(Layer):
    """``top = tanh(bottom)``, with derivative ``1 - top**2``."""

    cached = ("top",)

    def forward(self, bottom):
        """bottom (N, H) -> top (N, H)."""
        self.top = np.tanh(bottom)
        return self.top

    def backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, H)."""
        return top_diff * (1 - self.top * self.top)

    def __repr__(self):
        return "Tanh()"


class Softmax(Layer):
    """Softmax over classes, fused with the mean cross-entropy loss for its backward pass.

    ``backward`` takes the integer labels rather than a top diff: the gradient of the mean cross-entropy with
    respect to the logits is simply ``(probs - onehot(labels)) / N``, which is cheaper and more accurate than
    chaining the softmax Jacobian with the gradient of the logarithm.
    """

    cached = ("shifted_logits", "log_sum_exp", "probs")

    def forward(self, logits):
        """logits (N, C) -> probabilities (N, C), each row summing to 1.

        Subtracting the row maximum leaves the result unchanged and keeps ``exp`` from overflowing.
        """
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        self.shifted_logits = shifted
        self.log_sum_exp = np.log(sum_exp)
        self.probs = exp / sum_exp
        return self.probs

    def cross_entropy(self, labels, reduction="mean"):
        """Cross-entropy of the last forward pass against labels (N,): a float, or (N,) with ``reduction="none"``.

        Computed as ``log(sum(exp(z))) - z[label]`` on the shifted logits ``z``, so it stays finite even where a
        probability has underflowed to 0.
        """
        picked = self.shifted_logits[np.arange(len(labels)), labels]
        losses = self.log_sum_exp[:, 0] - picked
        return losses if reduction == "none" else float(losses.mean())

    def backward(self, labels):
        """labels (N,) -> bottom_diff (N, C), the gradient of the mean cross-entropy with respect to the logits."""
        n = len(labels)
        bottom_diff = self.probs.copy()
        bottom_diff[np.arange(n), labels] -= 1
        bottom_diff /= n
        return bottom_diff

    def __repr__(self):
        return "Softmax()"


class Dropout(Layer):
    """Inverted dropout: in training, each input is zeroed with probability ``p`` and the survivors are scaled by
    ``1 / (1 - p)``, so that the expected output equals the input and nothing needs rescaling at test time.

    Active only while ``training`` is True (the model sets it around each training forward pass); otherwise the
    identity. The masks come from ``rng``, the model's seeded generator, so a seeded run is repeatable.
    """

    cached = ("mask",)

    def __init__(self, p, rng=None):
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p
        self.rng = np.random.default_rng() if rng is None else rng
        self.training = False
        self.mask = None

    def forward(self, bottom):
        """bottom (N, H) -> top (N, H)."""
        if not self.training:
            self.mask = None
            return bottom
        keep = self.rng.random(bottom.shape, dtype=np.float32) >= self.p
        self.mask = keep.astype(bottom.dtype) / bottom.dtype.type(1 - self.p)
        return bottom * self.mask

    def backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, H): the gradient flows where the mask let the input through."""
        return top_diff if self.mask is None else top_diff * self.mask

    def __repr__(self):
        return f"Dropout({self.p})"


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
WEIGHT_INIT = {"relu": "he", "sigmoid": "xavier", "tanh": "xavier"}
LR_SCHEDULES = ("step", "cosine")
HISTORY_COLUMNS = ["iteration", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "diverged"]


class MLP:
    """A multilayer perceptron trained with mini-batch gradient descent, a learning-rate schedule and L2.

    ``layers`` lists the sizes from input to output, e.g. ``[784, 256, 128, 10]``. The network is an ``FC`` for each
    pair of adjacent sizes, the activation after every ``FC`` but the last (followed by ``Dropout`` when
    ``dropout > 0``), then ``Softmax``.

    Training minimises ``mean cross-entropy + (L2_lambda / 2) * sum of ||W||^2`` over the FC layers (biases are not
    regularised); with Adam the same ``L2_lambda`` is a decoupled weight decay instead (see ``optimizers``).
    The learning rate of batch ``i``, counted from 0 over the whole run:

    - ``lr_schedule="step"``: ``lr * decay_factor ** (i // decay_steps)``.
    - ``lr_schedule="cosine"``: ``lr * (1 + cos(pi * i / total)) / 2``, falling smoothly to 0 at the last batch.
    - ``warmup_steps > 0`` first raises it linearly, ``lr * (i + 1) / warmup_steps``, and the schedule then runs on
      the batches after the warm-up.

    ``optimizer`` is ``"sgd"`` (the plain step), ``"momentum"``, ``"nesterov"``, ``"adam"``, or an object from
    ``optimizers``. ``weight_init`` is ``"he"`` or ``"xavier"``; by default He for ReLU and Xavier otherwise.
    ``patience`` turns on early stopping: training ends after that many validation checks without a better
    accuracy. All randomness (initialisation, shuffling, dropout) comes from one generator seeded with ``seed``, so
    identical seeds give identical runs.
    """

    def __init__(self, layers, lr=0.1, activation="relu", max_epoch=40, batch_size=100, L2_lambda=0.0,
                 decay_factor=0.95, decay_steps=500, print_log=True, print_iter=100, seed=0, dtype=np.float32,
                 optimizer="sgd", dropout=0.0, lr_schedule="step", warmup_steps=0, weight_init=None, patience=None):
        if len(layers) < 2 or any(int(size) != size or size < 1 for size in layers):
            raise ValueError(f"layers must list at least two positive integer sizes, got {layers!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {sorted(ACTIVATIONS)}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {lr_schedule!r}: choose one of {LR_SCHEDULES}")
        self.layers = [int(size) for size in layers]
        # Python floats, even when given NumPy scalars (read from a DataFrame, say): a float64 scalar times a float32
        # array is a float64 array, and every update would run in float64 at a fraction of the speed.
        self.lr = float(lr)
        self.activation = activation
        self.max_epoch = max_epoch
        self.batch_size = batch_size
        self.L2_lambda = float(L2_lambda)
        self.decay_factor = float(decay_factor)
        self.decay_steps = decay_steps
        self.print_log = print_log
        self.print_iter = print_iter
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.optimizer_spec = optimizer
        self.dropout = dropout
        self.lr_schedule = lr_schedule
        self.warmup_steps = warmup_steps
        self.weight_init = weight_init or WEIGHT_INIT[activation]
        self.patience = patience
        self.init_model()

    def init_model(self):
        """Build ``self.net``, the list of layer objects in order, with freshly initialised weights.

        This also starts a new run: a fresh generator from ``seed``, a fresh optimizer state, an empty history.
        """
        self.rng = np.random.default_rng(self.seed)
        self.optimizer = make_optimizer(self.optimizer_spec)
        self.net = []
        n_fc = len(self.layers) - 1
        for i, (fan_in, fan_out) in enumerate(pairwise(self.layers)):
            self.net.append(FC(fan_in, fan_out, rng=self.rng, dtype=self.dtype, weight_init=self.weight_init,
                               propagate_down=i > 0))
            if i < n_fc - 1:
                self.net.append(ACTIVATIONS[self.activation]())
                if self.dropout:
                    self.net.append(Dropout(self.dropout, rng=self.rng))
        self.net.append(Softmax())
        self._start_run()

    def _start_run(self):
        self.current_lr = self.lr_at(0)
        self.iteration = self.epoch = 0
        self.best_val_acc = self.best_val_loss = np.nan
        self.best_iteration = 0
        self.diverged = self.stopped_early = False
        self.train_time_s = 0.0
        self._rows = []
        self._meter = [0.0, 0, 0]  # loss sum, correct, seen since the last recorded row
        self._best_params = self._last_params = None
        self._checks_without_improvement = 0

    def clear_cache(self):
        """Let every layer drop what it kept of the last forward pass (tens of MB after a validation pass)."""
        for layer in self.net:
            layer.clear()

    @property
    def fc_layers(self):
        """The FC layers in order."""
        return [layer for layer in self.net if isinstance(layer, FC)]

    @property
    def softmax(self):
        return self.net[-1]

    def config(self):
        """The constructor's arguments as a dict of plain values, enough to rebuild this model: ``MLP(**config)``."""
        return {"layers": self.layers, "lr": self.lr, "activation": self.activation, "max_epoch": self.max_epoch,
                "batch_size": self.batch_size, "L2_lambda": self.L2_lambda, "decay_factor": self.decay_factor,
                "decay_steps": self.decay_steps, "print_iter": self.print_iter, "seed": self.seed,
                "dtype": self.dtype.name, "optimizer": self.optimizer.config(), "dropout": self.dropout,
                "lr_schedule": self.lr_schedule, "warmup_steps": self.warmup_steps, "weight_init": self.weight_init,
                "patience": self.patience}

    def __repr__(self):
        return f"MLP({self.layers}, activation={self.activation!r}): " + " -> ".join(map(repr, self.net))

    def summary(self):
        """A DataFrame with one row per layer: its name, output size and parameter count."""
        rows, width = [], self.layers[0]
        for layer in self.net:
            params = 0
            if isinstance(layer, FC):
                width = layer.W.shape[1]
                params = layer.W.size + layer.b.size
            rows.append({"layer": repr(layer), "output_size": width, "parameters": params})
        return pd.DataFrame(rows)

    # -- the four steps of learning ---------------------------------------------------------------------------

    def forward(self, X, save_activations=False):
        """X (N, D) -> probabilities (N, C); with ``save_activations``, ``(probs, activations)``.

        ``activations`` lists every layer's output in order: FC1, activation 1, FC2, ..., Softmax.
        """
        top = X
        activations = []
        for layer in self.net:
            top = layer.forward(top)
            if save_activations:
                activations.append(top)
        return (top, activations) if save_activations else top

    def backward(self, y):
        """From the last forward pass and its labels y (N,), fill every FC's ``grad_W`` and ``grad_b``.

        ``grad_W`` includes the L2 term ``L2_lambda * W``, unless the optimizer decays the weights itself.
        """
        diff = self.softmax.backward(y)
        for layer in reversed(self.net[:-1]):
            diff = layer.backward(diff)
        if self.L2_lambda and not self.optimizer.decoupled_weight_decay:
            for fc in self.fc_layers:
                fc.grad_W += self.L2_lambda * fc.W

    def update(self):
        """One step of the optimizer with the current learning rate (plain SGD by default)."""
        params = [pair for fc in self.fc_layers for pair in ((fc.W, fc.grad_W), (fc.b, fc.grad_b))]
        if self.optimizer.decoupled_weight_decay:
            self.optimizer.step(params, self.current_lr, weight_decay=self.L2_lambda)
        else:
            self.optimizer.step(params, self.current_lr)

    def objective(self, X, y):
        """The loss whose gradient ``backward`` computes: mean cross-entropy, plus the L2 penalty where it is one."""
        self.forward(X)
        penalty = 0.0
        if not self.optimizer.decoupled_weight_decay:
            penalty = 0.5 * self.L2_lambda * sum(float(np.sum(fc.W * fc.W)) for fc in self.fc_layers)
        return self.softmax.cross_entropy(y) + penalty

    def predict(self, X):
        """X (N, D) -> predicted labels (N,)."""
        return np.concatenate([self.forward(X[start:start + EVAL_CHUNK_ROWS]).argmax(axis=1)
                               for start in range(0, len(X), EVAL_CHUNK_ROWS)])

    def evaluate(self, X, y):
        """(accuracy, loss) on (X, y), where loss is the mean cross-entropy alone, without the L2 term.

        Runs in chunks of ``EVAL_CHUNK_ROWS`` so that memory stays small whatever the number of rows.
        """
        correct, loss_sum = 0, 0.0
        for start in range(0, len(X), EVAL_CHUNK_ROWS):
            labels = y[start:start + EVAL_CHUNK_ROWS]
            probs = self.forward(X[start:start + EVAL_CHUNK_ROWS])
            correct += int(np.count_nonzero(probs.argmax(axis=1) == labels))
            loss_sum += float(self.softmax.cross_entropy(labels, reduction="none").sum(dtype=np.float64))
        return correct / len(X), loss_sum / len(X)

    # -- training ---------------------------------------------------------------------------------------------

    def lr_at(self, iteration, total_batches=None):
        """The learning rate of batch ``iteration`` (counted from 0) of a run of ``total_batches`` batches.

        Only the cosine schedule needs ``total_batches``.
        """
        if iteration < self.warmup_steps:
            return self.lr * (iteration + 1) / self.warmup_steps
        if self.lr_schedule == "step":
            return self.lr * self.decay_factor ** (iteration // self.decay_steps)
        if total_batches is None:
            return self.lr
        progress = (iteration - self.warmup_steps) / max(total_batches - self.warmup_steps, 1)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def train_step(self, X, y):
        """One mini-batch at the current learning rate: forward (dropout active), backward, update.

        Returns the summed cross-entropy of the batch (before the step) and how many it classified right.
        """
        dropouts = [layer for layer in self.net if isinstance(layer, Dropout)]
        for layer in dropouts:
            layer.training = True
        probs = self.forward(X)
        for layer in dropouts:
            layer.training = False
        loss_sum = float(self.softmax.cross_entropy(y, reduction="none").sum())
        if np.isfinite(loss_sum):
            self.backward(y)
            self.update()
        return loss_sum, int(np.count_nonzero(probs.argmax(axis=1) == y))

    @property
    def history(self):
        """The rows recorded so far in this run, as a DataFrame."""
        history = pd.DataFrame(self._rows, columns=HISTORY_COLUMNS)
        history["diverged"] = history["diverged"].astype(bool)
        return history

    def train(self, X_train, y_train, X_val, y_val, save_path=None, epochs=None, checkpoint_path=None):
        """Train up to ``max_epoch`` epochs and return the history of the run as a DataFrame.

        Every ``print_iter`` batches (and after the run's last one) a row is recorded with the iteration, epoch,
        learning rate, the train loss and accuracy averaged over the batches since the last row, and the loss and
        accuracy on the whole validation set. The model keeps the parameters with the best validation accuracy
        (lower validation loss breaks ties), writes them to ``save_path`` whenever they improve, and holds them when
        training ends. A run whose loss stops being finite ends at once with a last row flagged ``diverged``.

        ``epochs`` trains only that many more epochs. Calling ``train`` again continues the same run where it
        stopped, from the parameters it had reached (not the best ones), with the same generator, schedule, optimizer
        state and best-so-far: a run trained in pieces is identical to one trained at once.

        ``checkpoint_path`` writes the whole state of the run there after every epoch (see ``save_checkpoint``):
        a run that crashes loses at most the epoch in progress, and ``MLP.from_checkpoint`` resumes it.

        Afterwards ``best_val_acc``, ``best_val_loss``, ``best_iteration``, ``diverged``, ``stopped_early`` and
        ``train_time_s`` describe the run.
        """
        X_train, y_train = self._check_data(X_train, y_train, "training")
        X_val, y_val = self._check_data(X_val, y_val, "validation")
        if self._last_params is not None:
            self.load_param(self._last_params)
            self._last_params = None
        last_epoch = self.max_epoch if epochs is None else min(self.max_epoch, self.epoch + epochs)
        total_batches = self.max_epoch * -(-len(X_train) // self.batch_size)
        started = time.perf_counter()
        # Overflow in a diverging run is detected and reported in the history, not as warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            while self.epoch < last_epoch and not (self.diverged or self.stopped_early):
                self.epoch += 1
                self._train_epoch(X_train, y_train, X_val, y_val, total_batches, save_path)
                if checkpoint_path is not None:
                    # The checkpoint carries the training time so far, which a resumed run goes on adding to.
                    self.train_time_s += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save_checkpoint(checkpoint_path)
        self.train_time_s += time.perf_counter() - started
        self.clear_cache()
        self._last_params = self.get_parameters()
        if self._best_params is not None:
            self.load_param(self._best_params)
        return self.history

    def _train_epoch(self, X_train, y_train, X_val, y_val, total_batches, save_path):
        order = self.rng.permutation(len(X_train))
        for start in range(0, len(X_train), self.batch_size):
            batch = order[start:start + self.batch_size]
            self.current_lr = self.lr_at(self.iteration, total_batches)
            batch_loss, batch_correct = self.train_step(X_train[batch], y_train[batch])
            self.iteration += 1
            self._meter = [total + part for total, part in zip(self._meter, (batch_loss, batch_correct, len(batch)),
                                                                strict=True)]
            if not np.isfinite(batch_loss):
                self.diverged = True
            elif self.iteration % self.print_iter == 0 or self.iteration == total_batches:
                val_acc, val_loss = self.evaluate(X_val, y_val)
                self.diverged = not np.isfinite(val_loss)
            else:
                continue
            if self.diverged:
                # The argmax of non-finite probabilities means nothing.
                val_acc, val_loss = np.nan, np.nan
            self._record(val_acc, val_loss)
            if self.diverged:
                return
            self._keep_if_best(val_acc, val_loss, save_path)
            if self.patience is not None and self._checks_without_improvement >= self.patience:
                self.stopped_early = True
                return

    def _record(self, val_acc, val_loss):
        loss_sum, correct, seen = self._meter
        row = {"iteration": self.iteration, "epoch": self.epoch, "lr": self.current_lr,
               "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "val_loss": val_loss, "val_acc": val_acc, "diverged": self.diverged}
        self._rows.append(row)
        self._meter = [0.0, 0, 0]
        if self.print_log:
            line = (f"epoch {row['epoch']:3d}  iter {row['iteration']:6d}  lr {row['lr']:.4g}  "
                    f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                    f"val loss {val_loss:.4f} acc {val_acc:.4f}")
            print(line + ("  diverged: the loss is no longer finite" if self.diverged else ""))

    def _keep_if_best(self, val_acc, val_loss, save_path):
        if self._best_params is not None and (val_acc, -val_loss) <= (self.best_val_acc, -self.best_val_loss):
            self._checks_without_improvement += 1
            return
        self.best_val_acc, self.best_val_loss, self.best_iteration = val_acc, val_loss, self.iteration
        self._best_params = self.get_parameters()
        self._checks_without_improvement = 0
        if save_path is not None:
            self.save_param(save_path)

    def _check_data(self, X, y, name):
        X = np.asarray(X, dtype=self.dtype)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[1] != self.layers[0]:
            raise ValueError(f"{name} data must have shape (N, {self.layers[0]}), got {X.shape}")
        if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name} labels must be integers of shape ({len(X)},), got {y.dtype} {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= self.layers[-1]):
            raise ValueError(f"{name} labels must lie in [0, {self.layers[-1]}), got [{y.min()}, {y.max()}]")
        return X, y.astype(np.intp, copy=False)

    # -- parameters -------------------------------------------------------------------------------------------

    def get_parameters(self):
        """A dict of copies of the parameters, ``{"W1": ..., "b1": ..., "W2": ...}`` in layer order."""
        params = {}
        for i, fc in enumerate(self.fc_layers, start=1):
            params[f"W{i}"] = fc.W.copy()
            params[f"b{i}"] = fc.b.copy()
        return params

    def load_param(self, params):
        """Set the parameters from a dict like ``get_parameters()`` returns; ValueError on the first misfit."""
        expected = {name: array.shape for name, array in self.get_parameters().items()}
        for name, shape in expected.items():
            if name not in params:
                raise ValueError(f"parameter {name} is missing; expected keys {list(expected)}")
            if np.shape(params[name]) != shape:
                raise ValueError(f"parameter {name} has shape {np.shape(params[name])}, the model needs {shape}")
        extra = sorted(set(params) - set(expected))
        if extra:
            raise ValueError(f"unexpected parameters {extra}; expected keys {list(expected)}")
        for i, fc in enumerate(self.fc_layers, start=1):
            fc.W[...] = params[f"W{i}"]
            fc.b[...] = params[f"b{i}"]

    def save_param(self, path):
        """Write the parameters, ``layers``, ``activation`` and the model's ``config`` (as JSON) to one ``.npz``
        archive, atomically."""
        arrays = dict(self.get_parameters(), layers=np.array(self.layers, dtype=np.int64),
                      activation=np.array(self.activation), config=np.array(json.dumps(self.config())))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    def load_model(self, path):
        """Load parameters saved by ``save_param`` into this model, refusing archives of another architecture."""
        arrays = read_archive(path)
        layers = arrays.pop("layers").tolist()
        activation = str(arrays.pop("activation"))
        arrays.pop("config", None)
        if layers != self.layers or activation != self.activation:
            raise ValueError(f"{path} holds an MLP({layers}, activation={activation!r}), but this model is "
                             f"MLP({self.layers}, activation={self.activation!r})")
        self.load_param(arrays)

    @classmethod
    def from_file(cls, path, **kwargs):
        """A new MLP with the architecture, settings and parameters of an archive written by ``save_param``.

        ``kwargs`` override the recorded settings. Archives written before settings were recorded hold only the
        architecture; the other settings then take their defaults.
        """
        arrays = read_archive(path)
        config = {"layers": arrays["layers"].tolist(), "activation": str(arrays["activation"])}
        if "config" in arrays:
            config.update(json.loads(str(arrays["config"])))
        config.update(kwargs)
        model = cls(**config)
        model.load_model(path)
        return model

    # -- checkpoints ------------------------------------------------------------------------------------------

    def save_checkpoint(self, path):
        """Write the whole state of the run to one ``.npz`` archive, atomically: the settings, the parameters reached
        and the best ones, the optimizer's state, the generator's state, the history and the counters.

        ``MLP.from_checkpoint(path)`` rebuilds the model from it, and its ``train`` then goes on exactly as the
        run would have, bit for bit.
        """
        current = self.get_parameters() if self._last_params is None else self._last_params
        arrays = {f"params.{name}": array for name, array in current.items()}
        arrays.update({f"best.{name}": array for name, array in (self._best_params or {}).items()})
        arrays.update({f"optimizer.{name}": array for name, array in self.optimizer.state_dict().items()})
        run = {"iteration": self.iteration, "epoch": self.epoch, "current_lr": self.current_lr,
               "best_val_acc": self.best_val_acc, "best_val_loss": self.best_val_loss,
               "best_iteration": self.best_iteration, "diverged": self.diverged, "stopped_early": self.stopped_early,
               "train_time_s": self.train_time_s, "rows": self._rows, "meter": self._meter,
               "checks_without_improvement": self._checks_without_improvement,
               "generator": self.rng.bit_generator.state}
        arrays["config"] = np.array(json.dumps(self.config()))
        arrays["run"] = np.array(json.dumps(run))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def from_checkpoint(cls, path, print_log=True):
        """The model of a run saved by ``save_checkpoint``, ready to go on with ``train``. Its settings are the
        run's own: only whether it prints its log can be chosen anew."""
        arrays = read_archive(path, required=("config", "run"), kind="training checkpoint",
                              writer="MLP.save_checkpoint or train(..., checkpoint_path=...)")
        model = cls(**json.loads(str(arrays["config"])), print_log=print_log)
        run = json.loads(str(arrays["run"]))

        def group(prefix):
            return {name[len(prefix):]: array for name, array in arrays.items() if name.startswith(prefix)}

        model.load_param(group("params."))
        model._best_params = group("best.") or None
        model.optimizer.load_state_dict(group("optimizer."))
        model.rng.bit_generator.state = run.pop("generator")
        model._rows = run.pop("rows")
        model._meter = run.pop("meter")
        model._checks_without_improvement = run.pop("checks_without_improvement")
        for name, value in run.items():
            setattr(model, name, value)
        return model


def read_archive(path, required=("layers", "activation"), kind="model archive", writer="MLP.save_param"):
    """All arrays of an ``.npz`` archive as a dict, loaded without pickle; ValueError if it is not a ``kind``
    (an archive holding the ``required`` arrays), naming the ``writer`` that makes one."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an .npz archive")
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"{path} is not a readable {kind} ({error}); write it with {writer}") from None
    missing = set(required) - set(arrays)
    if missing:
        raise ValueError(f"{path} is not a {kind}: it lacks {sorted(missing)}; write it with {writer}")
    return arrays


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash part-way leaves the previous file (or none) at ``path``, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode the file it replaces had, or an ordinary one.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
