"""The Solver: everything about training a model that is not the model's own math.

``modules.py`` tells how a network computes its output (``forward``), its gradients (``backward``) and one step
(``update``). This module runs those steps, as Caffe's ``Solver`` runs a ``Net``:

- the **update rules** (``SGD``, ``Momentum``, ``Adam``) that turn a gradient into a step, with the L2 penalty or
  weight decay they apply;
- the **learning-rate policies** (step decay, cosine, linear warm-up);
- the **run**: ``Solver(model).train(...)`` loops over epochs and shuffled mini-batches, records the history, keeps the
  parameters with the best validation numbers (``rank_key`` is the rule), stops early or on divergence, and writes a
  checkpoint from which ``MLP.from_checkpoint`` resumes the run bit for bit.
"""

import copy
import json
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from fileio import atomic_write

LR_SCHEDULES = ("step", "cosine")
HISTORY_COLUMNS = ["iteration", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "diverged"]


def rank_key(val_acc, val_loss, diverged=False):
    """Sort key of the one rule for which run is better: higher validation accuracy, then lower validation loss.

    A run without finite validation numbers, or one that diverged, sorts after every run that has them. Sorting is
    stable, so runs equal on both numbers keep their order (the grid's, say).
    """
    if diverged or not (math.isfinite(val_acc) and math.isfinite(val_loss)):
        return (1, 0.0, 0.0)
    return (0, -val_acc, val_loss)


def check_data(X, y, model, name):
    """``(X, y)`` as the model computes with them (``model.dtype`` rows, ``intp`` labels); ValueError, naming the
    ``name`` set, if they cannot be rows and labels of this model."""
    X = np.asarray(X, dtype=model.dtype)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != model.layers[0]:
        raise ValueError(f"{name} data must have shape (N, {model.layers[0]}), got {X.shape}")
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers of shape ({len(X)},), got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= model.layers[-1]):
        raise ValueError(f"{name} labels must lie in [0, {model.layers[-1]}), got [{y.min()}, {y.max()}]")
    return X, y.astype(np.intp, copy=False)


# -- update rules -----------------------------------------------------------------------------------------------------

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
    """Plain stochastic gradient descent: ``param -= lr * (grad + weight_decay * param)`` (no decay for biases).

    Every rule has ``step(params, lr, weight_decay=0.0)``, where ``params`` is a list of ``(param, grad)`` pairs in
    a fixed order (the model's ``W1, b1, W2, b2, ...``), ``lr`` the learning rate of this step and ``weight_decay``
    the model's ``L2_lambda``; it changes every ``param`` in place. State such as a velocity is kept per pair, in
    the same order, and made on the first step; ``state_dict()`` and ``load_state_dict()`` save and restore it.
    ``decoupled_weight_decay`` says how ``weight_decay`` applies: False, as the gradient of an L2 penalty added to
    the loss; True (Adam), as a direct shrinking of the weights.
    """

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


# -- the run ----------------------------------------------------------------------------------------------------------

@dataclass
class Meter:
    """The training numbers summed over the batches since the last recorded row."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


class Solver:
    """Trains ``model`` (an ``MLP``) with the settings it was built with; one Solver is one run.

    The learning rate of batch ``i``, counted from 0 over the whole run of ``total`` batches:

    - ``lr_schedule="step"``: ``lr * decay_factor ** (i // decay_steps)``;
    - ``lr_schedule="cosine"``: ``lr * (1 + cos(pi * i / total)) / 2``, falling smoothly to 0 at the last batch;
    - ``warmup_steps > 0`` first raises it linearly, ``lr * (i + 1) / warmup_steps``, and the schedule then runs on
      the batches after the warm-up.

    Its state, all of which a checkpoint saves: where the run is (``epoch``, ``iteration``, ``current_lr``,
    ``train_time_s``), how it ended (``diverged``, ``stopped_early``), what it recorded (``rows``, ``meter``), the best
    validation numbers and parameters so far (``best_*``, ``checks_without_improvement``), and ``params_reached``:
    the parameters the run had reached when ``train`` returned, from which the next ``train`` goes on, while the model
    holds the best ones meanwhile.
    """

    def __init__(self, model):
        self.model = model
        self.epoch = self.iteration = 0
        self.current_lr = self.lr_at(0)
        self.train_time_s = 0.0
        self.diverged = self.stopped_early = False
        self.rows = []
        self.meter = Meter()
        self.best_val_acc = self.best_val_loss = math.nan
        self.best_iteration = 0
        self.best_params = None
        self.checks_without_improvement = 0
        self.params_reached = None

    def lr_at(self, iteration, total_batches=None):
        """The learning rate of batch ``iteration`` (counted from 0); only the cosine policy needs the run's length."""
        model = self.model
        if iteration < model.warmup_steps:
            return model.lr * (iteration + 1) / model.warmup_steps
        if model.lr_schedule == "step":
            return model.lr * model.decay_factor ** (iteration // model.decay_steps)
        if total_batches is None:
            return model.lr
        progress = (iteration - model.warmup_steps) / max(total_batches - model.warmup_steps, 1)
        return model.lr * 0.5 * (1 + math.cos(math.pi * progress))

    @property
    def history(self):
        """The rows recorded so far, as a DataFrame of ``HISTORY_COLUMNS``."""
        history = pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)
        history["diverged"] = history["diverged"].astype(bool)
        return history

    def train(self, X_train, y_train, X_val, y_val, save_path=None, epochs=None, checkpoint_path=None):
        """Go on with the run up to ``max_epoch`` epochs (or ``epochs`` more); return the history (see ``MLP.train``).

        The data must have passed the model's checks already.
        """
        model = self.model
        if self.params_reached is not None:
            model.load_param(self.params_reached)
            self.params_reached = None
        last_epoch = model.max_epoch if epochs is None else min(model.max_epoch, self.epoch + epochs)
        total_batches = model.max_epoch * -(-len(X_train) // model.batch_size)
        started = time.perf_counter()
        # Overflow in a diverging run is detected and reported in the history, not as warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            while self.epoch < last_epoch and not (self.diverged or self.stopped_early):
                self.epoch += 1
                self.train_epoch(X_train, y_train, X_val, y_val, total_batches, save_path)
                if checkpoint_path is not None:
                    # The checkpoint carries the training time so far, which a resumed run goes on adding to.
                    self.train_time_s += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save_checkpoint(checkpoint_path)
        self.train_time_s += time.perf_counter() - started
        for layer in model.net:
            layer.clear()  # a trained model need not carry its last batch (tens of MB after a validation pass)
        self.params_reached = model.get_parameters()
        if self.best_params is not None:
            model.load_param(self.best_params)
        return self.history

    def train_epoch(self, X_train, y_train, X_val, y_val, total_batches, save_path):
        """One pass over the training rows in a fresh random order, checking the validation set every
        ``print_iter`` batches and after the run's last one."""
        model = self.model
        order = model.rng.permutation(len(X_train))
        for start in range(0, len(X_train), model.batch_size):
            batch = order[start:start + model.batch_size]
            self.current_lr = self.lr_at(self.iteration, total_batches)
            loss_sum, correct = self.step(X_train[batch], y_train[batch])
            self.iteration += 1
            self.meter.loss_sum += loss_sum
            self.meter.correct += correct
            self.meter.seen += len(batch)
            loss_finite = math.isfinite(loss_sum)
            if not loss_finite or self.iteration % model.print_iter == 0 or self.iteration == total_batches:
                self.check_validation(X_val, y_val, save_path, loss_finite)
            if self.diverged or self.stopped_early:
                return

    def step(self, X, y):
        """One mini-batch at the current learning rate: forward with dropout, backward, update. Returns the summed
        cross-entropy of the batch (before the step) and how many it classified right; a batch whose loss is not
        finite takes no step."""
        model = self.model
        probs = model.forward(X, training=True)
        loss_sum = float(model.softmax.cross_entropy(y, reduction="none").sum())
        if math.isfinite(loss_sum):
            model.backward(y)
            model.update(self.current_lr)
        return loss_sum, int(np.count_nonzero(probs.argmax(axis=1) == y))

    def check_validation(self, X_val, y_val, save_path, loss_finite):
        """Measure the validation set, record a row, keep the parameters if they are the best so far, and decide
        whether the run has diverged or should stop early."""
        val_acc = val_loss = math.nan
        if loss_finite:
            val_acc, val_loss = self.model.evaluate(X_val, y_val)
        # The argmax of non-finite probabilities means nothing: a diverged row carries no validation numbers.
        self.diverged = not math.isfinite(val_loss)
        if self.diverged:
            val_acc = math.nan
        self.record(val_acc, val_loss)
        if self.diverged:
            return
        if self.best_params is None or rank_key(val_acc, val_loss) < rank_key(self.best_val_acc, self.best_val_loss):
            self.best_val_acc, self.best_val_loss, self.best_iteration = val_acc, val_loss, self.iteration
            self.best_params = self.model.get_parameters()
            self.checks_without_improvement = 0
            if save_path is not None:
                self.model.save_param(save_path)
        else:
            self.checks_without_improvement += 1
        patience = self.model.patience
        self.stopped_early = patience is not None and self.checks_without_improvement >= patience

    def record(self, val_acc, val_loss):
        meter = self.meter
        row = {"iteration": self.iteration, "epoch": self.epoch, "lr": self.current_lr,
               "train_loss": meter.loss_sum / meter.seen, "train_acc": meter.correct / meter.seen,
               "val_loss": val_loss, "val_acc": val_acc, "diverged": self.diverged}
        self.rows.append(row)
        self.meter = Meter()
        if self.model.print_log:
            line = (f"epoch {row['epoch']:3d}  iter {row['iteration']:6d}  lr {row['lr']:.4g}  "
                    f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                    f"val loss {val_loss:.4f} acc {val_acc:.4f}")
            print(line + ("  diverged: the loss is no longer finite" if self.diverged else ""))

    # -- checkpoints ------------------------------------------------------------------------------------------------

    def save_checkpoint(self, path):
        """Write the whole state of the run to one ``.npz`` archive, atomically: the model's settings, the parameters
        reached and the best ones, the update rule's state, the generator's state, and the Solver's named fields.
        ``MLP.from_checkpoint(path)`` rebuilds the model and this Solver from it."""
        model = self.model
        reached = self.params_reached or model.get_parameters()
        arrays = {**{f"params.{name}": array for name, array in reached.items()},
                  **{f"best.{name}": array for name, array in (self.best_params or {}).items()},
                  **{f"optimizer.{name}": array for name, array in model.optimizer.state_dict().items()}}
        run = {"epoch": self.epoch, "iteration": self.iteration, "current_lr": self.current_lr,
               "train_time_s": self.train_time_s, "diverged": self.diverged, "stopped_early": self.stopped_early,
               "rows": self.rows, "meter": asdict(self.meter), "best_val_acc": self.best_val_acc,
               "best_val_loss": self.best_val_loss, "best_iteration": self.best_iteration,
               "checks_without_improvement": self.checks_without_improvement,
               "generator": model.rng.bit_generator.state}
        arrays["config"] = np.array(json.dumps(model.config()))
        arrays["run"] = np.array(json.dumps(run))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    def restore(self, arrays):
        """Take up the run saved in ``arrays``, a checkpoint read by ``fileio.read_archive``."""

        def group(prefix):
            return {name[len(prefix):]: array for name, array in arrays.items() if name.startswith(prefix)}

        model, run = self.model, json.loads(str(arrays["run"]))
        model.load_param(group("params."))
        model.optimizer.load_state_dict(group("optimizer."))
        model.rng.bit_generator.state = run["generator"]
        self.epoch, self.iteration, self.current_lr = run["epoch"], run["iteration"], run["current_lr"]
        self.train_time_s = run["train_time_s"]
        self.diverged, self.stopped_early = run["diverged"], run["stopped_early"]
        self.rows, self.meter = run["rows"], Meter(**run["meter"])
        self.best_val_acc, self.best_val_loss = run["best_val_acc"], run["best_val_loss"]
        self.best_iteration = run["best_iteration"]
        self.best_params = group("best.") or None
        self.checks_without_improvement = run["checks_without_improvement"]
