"""A multilayer perceptron in NumPy, written to be read.

Every layer speaks Caffe's language: ``forward(bottom) -> top`` computes the layer's output from its input, and
``backward(top_diff) -> bottom_diff`` turns the gradient of the loss with respect to the output into the gradient
with respect to the input. A layer with parameters keeps each one beside its gradient under the same name
(``W`` and ``grad_W``, ``b`` and ``grad_b``), so an update rule only has to walk the pairs.

Shapes use ``N`` for the batch size, ``D`` for a layer's input features, ``H`` for its output features and ``C`` for
the number of classes. Everything runs on whole batches with matrix products; nothing loops over samples.
"""

import os
import tempfile
import time
import zipfile
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

EVAL_CHUNK_ROWS = 8192  # rows per chunk in evaluate(): ~8 MB per hidden layer of 256 float32 units


class FC:
    """Fully connected layer: ``top = bottom @ W + b``.

    Weights are drawn from a zero-mean normal distribution whose spread keeps the variance of the signal steady
    from layer to layer:

    - ``"he"`` (He et al., 2015), std ``sqrt(2 / D)``: for ReLU, which zeroes half of its input on average.
    - ``"xavier"`` (Glorot and Bengio, 2010), std ``sqrt(2 / (D + H))``: for Sigmoid and Tanh, which are close to
      linear around 0 and so need the variance kept equal both forward and backward.

    Biases start at zero. With ``propagate_down=False`` the layer skips its bottom diff, as Caffe does for a first
    layer whose input is the data: nobody reads that gradient, and it is the most expensive product of the layer.
    """

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


class ReLU:
    """``top = max(bottom, 0)``; the gradient passes where the input was positive."""

    def forward(self, bottom):
        """bottom (N, H) -> top (N, H)."""
        self.top = np.maximum(bottom, 0)
        return self.top

    def backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, H)."""
        return top_diff * (self.top > 0)

    def __repr__(self):
        return "ReLU()"


class Sigmoid:
    """``top = 1 / (1 + exp(-bottom))``, with derivative ``top * (1 - top)``."""

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


class Tanh:
    """``top = tanh(bottom)``, with derivative ``1 - top**2``."""

    def forward(self, bottom):
        """bottom (N, H) -> top (N, H)."""
        self.top = np.tanh(bottom)
        return self.top

    def backward(self, top_diff):
        """top_diff (N, H) -> bottom_diff (N, H)."""
        return top_diff * (1 - self.top * self.top)

    def __repr__(self):
        return "Tanh()"


class Softmax:
    """Softmax over classes, fused with the mean cross-entropy loss for its backward pass.

    ``backward`` takes the integer labels rather than a top diff: the gradient of the mean cross-entropy with
    respect to the logits is simply ``(probs - onehot(labels)) / N``, which is cheaper and more accurate than
    chaining the softmax Jacobian with the gradient of the logarithm.
    """

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


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
WEIGHT_INIT = {"relu": "he", "sigmoid": "xavier", "tanh": "xavier"}
HISTORY_COLUMNS = ["iteration", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "diverged"]


class MLP:
    """A multilayer perceptron trained with mini-batch SGD, step learning-rate decay and L2 regularisation.

    ``layers`` lists the sizes from input to output, e.g. ``[784, 256, 128, 10]``. The network is an ``FC`` for each
    pair of adjacent sizes, the activation after every ``FC`` but the last, then ``Softmax``.

    Training minimises ``mean cross-entropy + (L2_lambda / 2) * sum of ||W||^2`` over the FC layers (biases are not
    regularised). The learning rate of batch ``i`` (counted from 0 over the whole run) is
    ``lr * decay_factor ** (i // decay_steps)``. All randomness (initialisation, then shuffling) comes from one
    generator seeded with ``seed``, so identical seeds give identical runs.
    """

    def __init__(self, layers, lr=0.1, activation="relu", max_epoch=40, batch_size=100, L2_lambda=0.0,
                 decay_factor=0.95, decay_steps=500, print_log=True, print_iter=100, seed=0, dtype=np.float32):
        if len(layers) < 2 or any(int(size) != size or size < 1 for size in layers):
            raise ValueError(f"layers must list at least two positive integer sizes, got {layers!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {sorted(ACTIVATIONS)}")
        self.layers = [int(size) for size in layers]
        self.lr = lr
        self.activation = activation
        self.max_epoch = max_epoch
        self.batch_size = batch_size
        self.L2_lambda = L2_lambda
        self.decay_factor = decay_factor
        self.decay_steps = decay_steps
        self.print_log = print_log
        self.print_iter = print_iter
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.current_lr = lr
        self.init_model()

    def init_model(self):
        """Build ``self.net``, the list of layer objects in order, with freshly initialised weights."""
        self.net = []
        n_fc = len(self.layers) - 1
        for i, (fan_in, fan_out) in enumerate(pairwise(self.layers)):
            self.net.append(FC(fan_in, fan_out, rng=self.rng, dtype=self.dtype,
                               weight_init=WEIGHT_INIT[self.activation], propagate_down=i > 0))
            if i < n_fc - 1:
                self.net.append(ACTIVATIONS[self.activation]())
        self.net.append(Softmax())

    @property
    def fc_layers(self):
        """The FC layers in order."""
        return [layer for layer in self.net if isinstance(layer, FC)]

    @property
    def softmax(self):
        return self.net[-1]

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

        ``grad_W`` includes the L2 term ``L2_lambda * W``.
        """
        diff = self.softmax.backward(y)
        for layer in reversed(self.net[:-1]):
            diff = layer.backward(diff)
        if self.L2_lambda:
            for fc in self.fc_layers:
                fc.grad_W += self.L2_lambda * fc.W

    def update(self):
        """One plain SGD step with the current learning rate."""
        for fc in self.fc_layers:
            fc.W -= self.current_lr * fc.grad_W
            fc.b -= self.current_lr * fc.grad_b

    def objective(self, X, y):
        """The training objective on (X, y): mean cross-entropy plus the L2 penalty."""
        self.forward(X)
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

    def lr_at(self, iteration):
        """The learning rate of batch ``iteration`` (counted from 0): step decay every ``decay_steps`` batches."""
        return self.lr * self.decay_factor ** (iteration // self.decay_steps)

    def train_step(self, X, y):
        """One mini-batch of SGD at the current learning rate: forward, backward, update.

        Returns the summed cross-entropy of the batch (before the step) and how many it classified right.
        """
        probs = self.forward(X)
        loss_sum = float(self.softmax.cross_entropy(y, reduction="none").sum())
        if np.isfinite(loss_sum):
            self.backward(y)
            self.update()
        return loss_sum, int(np.count_nonzero(probs.argmax(axis=1) == y))

    def train(self, X_train, y_train, X_val, y_val, save_path=None):
        """Train with mini-batch SGD and return the history as a DataFrame.

        Every ``print_iter`` batches (and after the last one) a row is recorded with the iteration, epoch, learning
        rate, the train loss and accuracy averaged over the batches since the last row, and the loss and accuracy
        on the whole validation set. The model keeps the parameters with the best validation accuracy (lower
        validation loss breaks ties), writes them to ``save_path`` whenever they improve, and holds them when
        training ends. A run whose loss stops being finite ends at once with a last row flagged ``diverged``.

        Afterwards ``best_val_acc``, ``best_val_loss``, ``best_iteration``, ``diverged`` and ``train_time_s``
        describe the run.
        """
        X_train, y_train = self._check_data(X_train, y_train, "training")
        X_val, y_val = self._check_data(X_val, y_val, "validation")
        n = len(X_train)
        total_batches = self.max_epoch * -(-n // self.batch_size)
        self.best_val_acc, self.best_val_loss, self.best_iteration = -np.inf, np.inf, 0
        self.diverged = False
        best_params = self.get_parameters()
        rows = []
        loss_sum, correct, seen, iteration = 0.0, 0, 0, 0
        started = time.perf_counter()

        # Overflow in a diverging run is detected below and reported in the history, not as warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            for epoch in range(1, self.max_epoch + 1):
                order = self.rng.permutation(n)
                for start in range(0, n, self.batch_size):
                    batch = order[start:start + self.batch_size]
                    self.current_lr = self.lr_at(iteration)
                    batch_loss, batch_correct = self.train_step(X_train[batch], y_train[batch])
                    iteration += 1
                    loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + len(batch)
                    if not np.isfinite(batch_loss):
                        self.diverged = True
                    elif iteration % self.print_iter == 0 or iteration == total_batches:
                        val_acc, val_loss = self.evaluate(X_val, y_val)
                        self.diverged = not np.isfinite(val_loss)
                    else:
                        continue
                    if self.diverged:
                        # The argmax of non-finite probabilities means nothing.
                        val_acc, val_loss = np.nan, np.nan
                    rows.append({"iteration": iteration, "epoch": epoch, "lr": self.current_lr,
                                 "train_loss": loss_sum / seen, "train_acc": correct / seen,
                                 "val_loss": val_loss, "val_acc": val_acc, "diverged": self.diverged})
                    if self.print_log:
                        self._print_row(rows[-1])
                    if self.diverged:
                        break
                    loss_sum, correct, seen = 0.0, 0, 0
                    if (val_acc, -val_loss) > (self.best_val_acc, -self.best_val_loss):
                        self.best_val_acc, self.best_val_loss, self.best_iteration = val_acc, val_loss, iteration
                        best_params = self.get_parameters()
                        if save_path is not None:
                            self.save_param(save_path)
                if self.diverged:
                    break

        self.train_time_s = time.perf_counter() - started
        self.load_param(best_params)
        if self.best_iteration == 0:
            self.best_val_acc = self.best_val_loss = np.nan
        history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
        history["diverged"] = history["diverged"].astype(bool)
        return history

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

    @staticmethod
    def _print_row(row):
        line = (f"epoch {row['epoch']:3d}  iter {row['iteration']:6d}  lr {row['lr']:.4g}  "
                f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}")
        print(line + ("  diverged: the loss is no longer finite" if row["diverged"] else ""))

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
            fc.W = np.array(params[f"W{i}"], dtype=self.dtype)
            fc.b = np.array(params[f"b{i}"], dtype=self.dtype)

    def save_param(self, path):
        """Write the parameters, ``layers`` and ``activation`` to one ``.npz`` archive, atomically."""
        arrays = dict(self.get_parameters(), layers=np.array(self.layers, dtype=np.int64),
                      activation=np.array(self.activation))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    def load_model(self, path):
        """Load parameters saved by ``save_param`` into this model, refusing archives of another architecture."""
        arrays = read_archive(path)
        layers = arrays.pop("layers").tolist()
        activation = str(arrays.pop("activation"))
        if layers != self.layers or activation != self.activation:
            raise ValueError(f"{path} holds an MLP({layers}, activation={activation!r}), but this model is "
                             f"MLP({self.layers}, activation={self.activation!r})")
        self.load_param(arrays)

    @classmethod
    def from_file(cls, path, **kwargs):
        """A new MLP with the architecture and parameters of an archive written by ``save_param``."""
        arrays = read_archive(path)
        model = cls(arrays["layers"].tolist(), activation=str(arrays["activation"]), **kwargs)
        model.load_model(path)
        return model


def read_archive(path):
    """All arrays of a model archive as a dict, loaded without pickle; ValueError if it is not such an archive."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an .npz archive")
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"{path} is not a readable model archive ({error}); write it with MLP.save_param") from None
    missing = {"layers", "activation"} - set(arrays)
    if missing:
        raise ValueError(f"{path} is not a model archive: it lacks {sorted(missing)}; write it with MLP.save_param")
    return arrays


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash part-way leaves the previous file (or none) at ``path``, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
