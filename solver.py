"""The Solver: everything about training a model that is not the model's own math.

``modules.py`` tells how a network computes its output (``forward``), its gradients (``backward``) and one step
(``update``). This module runs those steps, as Caffe's ``Solver`` runs a ``Net``:

- the **learning-rate policies** (step decay, cosine, linear warm-up);
- the **run**: ``Solver(model).train(...)`` loops over epochs and shuffled mini-batches (moved and mirrored, when the
  model asks for augmentation), records the history, keeps the
  parameters with the best validation numbers (``rank_key`` is the rule), stops early or on divergence, and writes a
  checkpoint from which ``MLP.from_checkpoint`` resumes the run bit for bit.

The update rules (SGD, momentum, Adam) that the model's ``update`` applies are in ``optimizers.py``; the checks that
turn away settings and data no run could use (the doors) in ``doors.py``; files are written and read through
``fileio.py``.
"""

import bisect
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from doors import batches_per_epoch, check_parameters
from fileio import atomic_write, fingerprint, read_data_range
from kernels import average_pass, flat, moved_images, one_thread

HISTORY_COLUMNS = ["iteration", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "diverged"]
AVERAGE_COLUMNS = ["raw_val_loss", "raw_val_acc"]  # with weight_average: the raw parameters' numbers, beside them
# A mean batch loss above DIVERGENCE_LOSS * ln(C), a hundred times that of a uniform guess over the C classes, is a
# divergence, as a non-finite one is: no run that learns comes near it (the committed histories stay below 2.3).
DIVERGENCE_LOSS = 100


def rank_key(val_acc, val_loss, diverged=False):
    """Sort key of the one rule for which run is better: higher validation accuracy, then lower validation loss.

    A run without finite validation numbers, or one that diverged, sorts after every run that has them. Sorting is
    stable, so runs equal on both numbers keep their order (the grid's, say).
    """
    if diverged or not (math.isfinite(val_acc) and math.isfinite(val_loss)):
        return (1, 0.0, 0.0)
    return (0, -val_acc, val_loss)


def views(augment_shift, augment_flip):
    """Every view the Solver's augmentation can draw of an image, in the order of the index ``Solver.augmented``
    gives it: ``(moves (V, 2), flips (V,))``, the moves down and right, each flip after its unflipped view. A teacher's
    targets for each view (N, V, C) let a student learn, on every view it draws, the teacher's answer for that view."""
    steps = range(-augment_shift, augment_shift + 1)
    flips = (False, True) if augment_flip else (False,)
    grid = [(down, right, flip) for down in steps for right in steps for flip in flips]
    return np.array([[down, right] for down, right, _ in grid]), np.array([flip for *_, flip in grid])


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
    - ``lr_schedule="milestones"``: ``lr * decay_factor ** k`` once ``k`` of the ``decay_epochs`` have been
      completed (with ``[50, 75]``, epochs 51 to 75 run at ``lr * decay_factor``), as Nøkland and Eidnes step it;
    - ``warmup_steps > 0`` first raises it linearly, ``lr * (i + 1) / warmup_steps``, and the schedule then runs on
      the batches after the warm-up.

    With ``weight_average`` ``d`` > 0 the Solver also keeps an exponential moving average of the parameters, ``avg
    += (1 - d) * (params - avg)`` after every step (batch normalisation's running averages included), and each
    validation check measures the averaged parameters, which are what the run keeps (best, or last without a
    validation set); the raw parameters' numbers are recorded beside them (``raw_val_acc``, ``raw_val_loss``).
    Without a validation set (``X_val`` None) nothing is chosen: the run ends holding its last parameters (or their
    average), and its history has no validation numbers.

    An epoch's last batch holds what is left of the rows. When that is a single row and the model has batch
    normalisation, the epoch ends without it (no step, no update of the running statistics; ``batches_per_epoch``
    counts the batches taken): a single row has no variance, and would pull the running variance towards 0. The row
    left out is another in each epoch, as the order is shuffled anew. Without batch normalisation every row trains.

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
        self.data_fingerprint = None
        self.averaged = None  # the moving average of the parameters, with weight_average
        self.loss_limit = DIVERGENCE_LOSS * math.log(model.layers[-1])

    def lr_at(self, iteration, total_batches=None):
        """The learning rate of batch ``iteration`` (counted from 0); only the cosine policy needs the run's length."""
        model = self.model
        if iteration < model.warmup_steps:
            return model.lr * (iteration + 1) / model.warmup_steps
        if model.lr_schedule == "step":
            return model.lr * model.decay_factor ** (iteration // model.decay_steps)
        if total_batches is None:
            return model.lr
        if model.lr_schedule == "milestones":
            epochs_done = iteration // (total_batches // model.max_epoch)
            return model.lr * model.decay_factor ** bisect.bisect_right(model.decay_epochs, epochs_done)
        progress = (iteration - model.warmup_steps) / max(total_batches - model.warmup_steps, 1)
        return model.lr * 0.5 * (1 + math.cos(math.pi * progress))

    @property
    def history(self):
        """The rows recorded so far, as a DataFrame of ``HISTORY_COLUMNS``."""
        averaged = self.model.weight_average and any("raw_val_acc" in row for row in self.rows)
        history = pd.DataFrame(self.rows, columns=HISTORY_COLUMNS + (AVERAGE_COLUMNS if averaged else []))
        history["diverged"] = history["diverged"].astype(bool)
        return history

    def train(self, X_train, y_train, X_val, y_val, save_path=None, epochs=None, checkpoint_path=None, on_epoch=None,
              data_range=None):
        """Go on with the run up to ``max_epoch`` epochs (or ``epochs`` more); return the history (see ``MLP.train``).

        The data and arguments must have passed the model's checks already; ``data_range``, the training data's (min,
        max), becomes the model's ``data_range`` once the data is known to be the run's.
        """
        model = self.model
        data = fingerprint(X_train, y_train, X_val, y_val)
        if self.data_fingerprint is not None and data != self.data_fingerprint:
            differs = [name for name, old, new in zip(("X_train", "y_train", "X_val", "y_val"), self.data_fingerprint,
                                                       data, strict=True) if old != new]
            run, new_run = ("this run", "start a new run (a new MLP, or init_model())") if checkpoint_path is None \
                else (f"the run of the checkpoint {checkpoint_path}", f"delete {checkpoint_path} to start a new run")
            raise ValueError(f"{run} was trained on other data ({', '.join(differs)} differ: {data} against "
                             f"{self.data_fingerprint}); go on with the data it started with, or {new_run} for "
                             "this data")
        self.data_fingerprint = data
        model.data_range = data_range
        one_thread()
        if self.params_reached is not None:
            model.load_param(self.params_reached)
            self.params_reached = None
        if model.weight_average and self.averaged is None:
            self.averaged = model.get_parameters()
        last_epoch = model.max_epoch if epochs is None else min(model.max_epoch, self.epoch + epochs)
        total_batches = model.max_epoch * batches_per_epoch(model, len(X_train))
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
                if on_epoch is not None:
                    on_epoch(model)
        self.train_time_s += time.perf_counter() - started
        for layer in model.net:
            layer.clear()  # a trained model need not carry its last batch (tens of MB after a validation pass)
        self.params_reached = model.get_parameters()
        if not self.rows:  # a piece of a run shorter than print_iter batches: said, not left as a silent NaN
            warnings.warn(f"training stopped after {self.iteration} batches, before the run's first validation check "
                          f"(every print_iter={model.print_iter} batches, and after the run's last): the model has "
                          "no history yet and best_val_acc is NaN; train further (more epochs) or set a smaller "
                          "print_iter", stacklevel=3)
        kept = self.best_params if X_val is not None else self.averaged
        if kept is not None:
            model.load_param(kept)
        return self.history

    def train_epoch(self, X_train, y_train, X_val, y_val, total_batches, save_path):
        """One pass over the training rows in a fresh random order, checking the validation set every
        ``print_iter`` batches and after the run's last one."""
        model = self.model
        order = model.rng.permutation(len(X_train))
        for start in range(0, len(X_train), model.batch_size):
            batch = order[start:start + model.batch_size]
            if len(batch) == 1 and model.batch_norm:
                return  # a trailing batch of one row: batch normalisation skips it (see the class docstring)
            self.current_lr = self.lr_at(self.iteration, total_batches)
            loss_sum, correct, exploded = self.step(X_train[batch], y_train[batch])
            self.iteration += 1
            self.meter.loss_sum += loss_sum
            self.meter.correct += correct
            self.meter.seen += len(batch)
            if exploded or self.iteration % model.print_iter == 0 or self.iteration == total_batches:
                self.check_validation(X_val, y_val, save_path, exploded)
            if self.diverged or self.stopped_early:
                return

    def step(self, X, y):
        """One mini-batch at the current learning rate: augmented (see ``augmented``), forward with dropout, backward,
        update. Returns the summed cross-entropy of the batch (before the step), how many it classified right and
        whether it exploded (see ``exploded``): a batch that exploded takes no step and leaves the running statistics
        as they were."""
        model = self.model
        if model.augment_shift or model.augment_flip:
            X, views = self.augmented(X)
            if y.ndim == 3:  # a teacher's targets for each view of each image: those of the views just drawn
                y = y[np.arange(len(y)), views]
        statistics = {key: array.copy() for key, array in self.statistics().items()}
        probs = model.forward(X, training=True)
        loss_sum = float(model.softmax.cross_entropy(y, reduction="none").sum())
        exploded = self.exploded(loss_sum, len(y))
        if exploded:
            for key, array in self.statistics().items():
                array[...] = statistics[key]
        else:
            model.backward(y)
            model.update(self.current_lr)
            if self.averaged is not None:
                weight = 1 - model.weight_average
                for name, param in model.parameters().items():
                    average = self.averaged[name]
                    average_pass(flat(average), flat(param), average.dtype.type(weight))
        labels = y if y.ndim == 1 else y.argmax(axis=1)  # a target distribution's most likely class
        return loss_sum, int(np.count_nonzero(probs.argmax(axis=1) == labels)), exploded

    def statistics(self):
        """The model's running statistics, which a forward pass in training moves (batch normalisation's averages):
        ``{(layer index, name): array}``, the arrays themselves."""
        return {(i, name): getattr(layer, name) for i, layer in enumerate(self.model.net)
                for name in getattr(layer, "state", ())}

    def augmented(self, X):
        """The batch ``X`` (N, side * side) with each image moved by up to ``augment_shift`` pixels each way and, with
        ``augment_flip``, mirrored with probability 1/2 (``kernels.moved_images``), and the index of each image's view
        among :func:`views` (N,). The draws come from the model's generator: a run stays repeatable, and a checkpoint
        resumes it exactly."""
        model, n = self.model, len(X)
        moves = model.rng.integers(-model.augment_shift, model.augment_shift + 1, size=(n, 2))
        flips = model.rng.random(n) < 0.5 if model.augment_flip else np.zeros(n, dtype=bool)
        side = 2 * model.augment_shift + 1
        views = ((moves[:, 0] + model.augment_shift) * side + moves[:, 1] + model.augment_shift) * (
            1 + model.augment_flip) + flips
        return moved_images(X, math.isqrt(X.shape[1]), moves, flips), views

    def exploded(self, loss_sum, n):
        """Whether the batch of ``n`` rows just passed forward, with summed loss ``loss_sum``, has diverged: its mean
        loss is not finite or above ``loss_limit``, ``DIVERGENCE_LOSS * ln(C)`` (NaN is never <=, so it counts as
        exploded), or it left a running statistic that is not finite. The latter is how batch normalisation diverges
        on extreme inputs (data scaled by 1e19, say): a batch variance beyond the float range normalises every row to
        ``beta``, so the loss stays a finite ln(C) while nothing learns and the running variance becomes infinite."""
        return not loss_sum <= self.loss_limit * n or not all(np.isfinite(array).all()
                                                              for array in self.statistics().values())

    def check_validation(self, X_val, y_val, save_path, exploded):
        """Measure the validation set, record a row, keep the parameters if they are the best so far, and decide
        whether the run has diverged (its training loss exploded, or the validation loss is not finite) or should
        stop early."""
        model = self.model
        if X_val is None:
            self.diverged = exploded
            self.record(math.nan, math.nan)
            return
        val_acc = val_loss = math.nan
        raw = {}
        if not exploded:
            val_acc, val_loss = model.measure(X_val, y_val)
            if self.averaged is not None:  # the averaged parameters are measured, and kept; the raw ones go back
                raw, reached = dict(raw_val_acc=val_acc, raw_val_loss=val_loss), model.get_parameters()
                model.load_param(self.averaged)
                val_acc, val_loss = model.measure(X_val, y_val)
        # The argmax of non-finite probabilities means nothing: a diverged row carries no validation numbers.
        self.diverged = not math.isfinite(val_loss)
        if self.diverged:
            val_acc = math.nan
        self.record(val_acc, val_loss, **raw)
        if not self.diverged:
            self.keep_if_best(val_acc, val_loss, save_path)
        if raw:
            model.load_param(reached)

    def keep_if_best(self, val_acc, val_loss, save_path):
        """Keep the model's parameters (and write them to ``save_path``) if their validation numbers are the best so
        far; count the checks without improvement, and stop early after ``patience`` of them."""
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

    def record(self, val_acc, val_loss, **raw):
        meter = self.meter
        row = {"iteration": self.iteration, "epoch": self.epoch, "lr": self.current_lr,
               "train_loss": meter.loss_sum / meter.seen, "train_acc": meter.correct / meter.seen,
               "val_loss": val_loss, "val_acc": val_acc, "diverged": self.diverged, **raw}
        self.rows.append(row)
        self.meter = Meter()
        if self.model.print_log:
            line = (f"epoch {row['epoch']:3d}  iter {row['iteration']:6d}  lr {row['lr']:.4g}  "
                    f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                    f"val loss {val_loss:.4f} acc {val_acc:.4f}")
            print(line + ("  diverged: the loss exploded or is no longer finite" if self.diverged else ""))

    # -- checkpoints ------------------------------------------------------------------------------------------------

    def save_checkpoint(self, path):
        """Write the whole state of the run to one ``.npz`` archive, atomically: the model's settings, the parameters
        reached and the best ones, the update rule's state, the generator's state, and the Solver's named fields.
        ``MLP.from_checkpoint(path)`` rebuilds the model and this Solver from it."""
        model = self.model
        reached = self.params_reached or model.get_parameters()
        arrays = {**{f"params.{name}": array for name, array in reached.items()},
                  **{f"best.{name}": array for name, array in (self.best_params or {}).items()},
                  **{f"optimizer.{name}": array for name, array in model.optimizer.state_dict().items()},
                  **{f"average.{name}": array for name, array in (self.averaged or {}).items()}}
        run = {"epoch": self.epoch, "iteration": self.iteration, "current_lr": self.current_lr,
               "train_time_s": self.train_time_s, "diverged": self.diverged, "stopped_early": self.stopped_early,
               "rows": self.rows, "meter": asdict(self.meter), "best_val_acc": self.best_val_acc,
               "best_val_loss": self.best_val_loss, "best_iteration": self.best_iteration,
               "checks_without_improvement": self.checks_without_improvement,
               "data_fingerprint": self.data_fingerprint, "generator": model.rng.bit_generator.state}
        if model.data_range is not None:
            arrays["data_range"] = np.array(model.data_range)
        arrays["config"] = np.array(json.dumps(model.config()))
        arrays["run"] = np.array(json.dumps(run))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    def restore(self, arrays, path):
        """Take up the run saved in ``arrays``, a checkpoint read by ``read_archive`` from ``path``; ValueError, naming
        the file, if its parameters cannot be the model's (see ``check_parameters``) or its run record or data range
        is not what ``save_checkpoint`` writes (:func:`read_run`, ``fileio.read_data_range``)."""

        def group(prefix):
            return {name[len(prefix):]: array for name, array in arrays.items() if name.startswith(prefix)}

        model, run = self.model, read_run(arrays, path)
        model.load_param(group("params."), f"{path} (the reached parameters)")
        model.optimizer.load_state_dict(group("optimizer."))
        model.rng.bit_generator.state = run["generator"]
        model.data_range = read_data_range(arrays, path, "training checkpoint", "train(..., checkpoint_path=...)")
        self.epoch, self.iteration, self.current_lr = run["epoch"], run["iteration"], run["current_lr"]
        self.train_time_s = run["train_time_s"]
        self.diverged, self.stopped_early = run["diverged"], run["stopped_early"]
        self.rows, self.meter = run["rows"], Meter(**run["meter"])
        self.best_val_acc, self.best_val_loss = run["best_val_acc"], run["best_val_loss"]
        self.best_iteration = run["best_iteration"]
        self.best_params = group("best.") or None
        self.averaged = group("average.") or None
        if self.best_params is not None:
            check_parameters(self.best_params, model.parameters(), f"{path} (the best parameters)")
        self.checks_without_improvement = run["checks_without_improvement"]
        self.data_fingerprint = run["data_fingerprint"]

    def restore_record(self, rows, train_time_s):
        """Take up a finished run from its record instead of its checkpoint: the history ``rows`` (dicts of
        ``HISTORY_COLUMNS``) and the training time it took. The model must already hold the run's best parameters
        (``MLP.from_file`` of the weights it saved); its best validation numbers are found again in ``rows`` by
        ``rank_key``, as ``check_validation`` found them. A record carries no optimizer state: the run cannot go on."""
        last = rows[-1]
        self.rows = [dict(row, diverged=bool(row["diverged"])) for row in rows]
        self.epoch, self.iteration, self.current_lr = int(last["epoch"]), int(last["iteration"]), float(last["lr"])
        self.train_time_s, self.diverged = float(train_time_s), bool(last["diverged"])
        for row in self.rows:
            if row["diverged"] or not math.isfinite(row["val_acc"]):  # no validation numbers: a run without a set
                continue
            if math.isnan(self.best_val_acc) or rank_key(row["val_acc"], row["val_loss"]) < rank_key(
                    self.best_val_acc, self.best_val_loss):
                self.best_val_acc, self.best_val_loss = float(row["val_acc"]), float(row["val_loss"])
                self.best_iteration = int(row["iteration"])
        self.stopped_early = self.epoch < self.model.max_epoch and not self.diverged


NUMBER, COUNT = (int, float), int
# What each field of a checkpoint's run record must be (``Solver.save_checkpoint``): JSON's numbers, NaN included.
RUN_FIELDS = {"epoch": COUNT, "iteration": COUNT, "current_lr": NUMBER, "train_time_s": NUMBER, "diverged": bool,
              "stopped_early": bool, "rows": list, "meter": dict, "best_val_acc": NUMBER, "best_val_loss": NUMBER,
              "best_iteration": COUNT, "checks_without_improvement": COUNT, "data_fingerprint": (list, type(None)),
              "generator": dict}


def read_run(arrays, path):
    """The run record of a checkpoint's ``arrays`` (read from ``path``, its JSON checked by ``read_archive``);
    ValueError naming the file and the field that is missing or of another type."""
    run = json.loads(str(arrays["run"]))
    for field, kind in RUN_FIELDS.items():
        if field not in run:
            problem = "lacks it"
        elif not isinstance(run[field], kind) or (kind in (COUNT, NUMBER) and isinstance(run[field], bool)):
            problem = f"holds {run[field]!r}"
        else:
            continue
        raise ValueError(f"{path} is not a readable training checkpoint: the field {field!r} of its run record "
                         f"{problem}; delete the checkpoint to start the run anew, or restore it (from a backup)")
    return run
