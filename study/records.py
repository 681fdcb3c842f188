"""Finished runs kept on disk and read back instead of trained again: what lets the notebook resume its models.

A run's record is three things, written in this order when it finishes:

- its best-validation weights, ``<weights_dir>/<name>.npz`` (``MLP.save_param``, with its settings), unless the run
  is compared on its validation numbers alone (``Records.keeps_weights``), which needs its history, not its weights,
  or, for a job that compares several runs' predictions, its probabilities on the validation set
  (``<history_dir>/<name>.probabilities.npz``, :meth:`Records.write_probabilities`);
- its history, ``<history_dir>/<name>.csv``;
- a row of the log (``name``, ``key``, then ``runs.outcome``): the row is the record's seal, so a run cut short
  before it is trained again.

The ``key`` is ``runs.run_key`` of the run's settings and data, so a record is read back only for the same settings
and the same data; a record with a missing file is trained again, and only that one. Whether a record is complete is
decided from its own files (:meth:`Records.stands_without_weights`: weights, or probabilities whose key is its row's),
never from another run's row: a lost or torn row costs its own run alone. A record read back is a
``MLP.from_file`` model whose Solver takes up the recorded history (``Solver.restore_record``): it predicts, and it
reports its ``history``, ``best_val_acc``, ``epoch`` and ``train_time_s``, as the model that trained did.

Nothing recorded is lost or mistaken for another run (a ``RecordError`` says which file and what to do):

- a name whose complete record was made with other settings or data is not trained again under that name, unless
  ``fresh`` asks to replace it; a file that a new record replaces is moved aside first (``runs.backup``);
- weights whose archive holds other settings than the record's, or a history that does not agree with the record's
  row (another run's, empty, unreadable), are refused, not read back.
"""

import json
import math
import sys
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from fileio import atomic_write, read_archive
from study import record_checks as checks
from study import runs

COLUMNS = ["name", "key", *runs.OUTCOMES]


class RecordError(ValueError):
    """A record that does not hold what its row says, or a run that would replace another run's record."""


@dataclass(frozen=True)
class Records:
    """Where the records of a group of runs live: their log, their histories and their weights.

    Runs compared on validation alone keep no weights (:meth:`keeps_weights`): ``weightless`` names runs that are
    never more, ``groups`` lists groups of candidates (names in the order they are chosen from) of which only the
    one validation chooses is used further, and a run whose validation probabilities are recorded needs its weights
    only until ``finished``, the last run of its job, is recorded. Read back without its weights, a run holds its
    initial weights: its history, validation numbers or probabilities are what it is read for."""

    log_path: Path
    history_dir: Path
    weights_dir: Path
    weightless: frozenset = frozenset()
    groups: tuple = ()
    finished: str | None = None

    def keeps_weights(self, name, logged=None):
        """Whether the record of ``name`` holds its weights: not when it is weightless, nor when it is a candidate of
        one of ``groups`` that validation did not choose (:meth:`unchosen`), nor when its validation probabilities
        are recorded under its key and so is ``finished`` (``logged``, the log's rows by name): what :meth:`prune`
        moves aside. Whether a record is complete does not depend on ``finished`` (:meth:`stands_without_weights`)."""
        logged = self.read_log() if logged is None else logged
        if name in self.weightless:
            return False
        if (self.finished in logged and name in logged
                and self.probabilities_key(name) == logged[name]["key"]):
            return False
        return not self.unchosen(name, logged)

    def unchosen(self, name, logged):
        """Whether ``name`` is a candidate of one of ``groups`` that validation did not choose (``runs.ranked`` over
        the group's rows in ``logged``, the rule that chooses among the candidates), once the whole group is
        recorded."""
        group = next((group for group in self.groups if name in group), ())
        rows = [logged[member] for member in group if member in logged]
        if not group or len(rows) < len(group):
            return False
        chosen = runs.ranked(pd.DataFrame(rows))
        return not chosen.empty and chosen["name"].iloc[0] != name

    def stands_without_weights(self, row, logged=None):
        """Whether the record of ``row`` is complete without its weights: it is weightless, or its validation
        probabilities are recorded under its own key (decided from its record alone, whatever the other rows of the
        log), or it is a candidate its group did not choose (:meth:`unchosen`)."""
        name = row["name"]
        if name in self.weightless or self.probabilities_key(name) == row["key"]:
            return True
        return bool(self.groups) and self.unchosen(name, self.read_log() if logged is None else logged)

    def weights_path(self, name):
        return Path(self.weights_dir) / f"{name}.npz"

    def history_path(self, name):
        return Path(self.history_dir) / f"{name}.csv"

    def probabilities_path(self, name):
        return Path(self.history_dir) / f"{name}.probabilities.npz"

    def write_probabilities(self, name, key, probabilities):
        """Record ``probabilities`` (``{view: (N, C) array}``, a view such as ``"flip_average"``), the predictions on
        the validation set of the run recorded as ``name`` under ``key``, which then needs its weights no longer once
        ``finished`` is recorded."""
        arrays = {**probabilities, "key": np.array(key)}
        atomic_write(self.probabilities_path(name), lambda f: np.savez_compressed(f, **arrays))

    def probabilities_key(self, name):
        """The key under which the validation probabilities of ``name`` are recorded, or None when there are none."""
        path = self.probabilities_path(name)
        if not path.exists():
            return None
        return str(self.read_probability_arrays(name)["key"])

    def read_probability_arrays(self, name):
        path = self.probabilities_path(name)
        try:
            return read_archive(path, ("key",), "record of validation probabilities", "Records.write_probabilities")
        except ValueError as error:  # it names the file
            raise RecordError(f"{error}; or restore it (from git, say)") from None

    def read_probabilities(self, name, key, views=(), shape=None):
        """The probabilities that :meth:`write_probabilities` recorded for the run ``name`` of ``key``, or None when
        there are none of that run (a run trained again since has another key, or the same key and no file: see
        :meth:`write`). RecordError naming the file when one of ``views`` is missing, or a view is not ``shape``
        (``(N, C)``, when given) or not probabilities (finite, in [0, 1], each row summing to 1)."""
        path = self.probabilities_path(name)
        if not path.exists():
            return None
        arrays = self.read_probability_arrays(name)
        if str(arrays.pop("key")) != key:
            return None
        problems = [f"it lacks the view {view!r}" for view in views if view not in arrays]
        for view, array in arrays.items():
            problems += [f"{view} {problem}" for problem in checks.probability_problems(array, shape)]
        if problems:
            raise RecordError(f"{path} does not hold the validation probabilities of {name} ({'; '.join(problems)}): "
                              "restore it (from git, say), or delete it, and it is computed again from the run's "
                              "weights if they are there (if not, `make frontier` trains the run again)")
        return arrays

    def read_log(self):
        """The log's rows by name, the last of each name (a run trained again appends a new row); none when there
        is no log. A last row torn by a crash is skipped, the file left as it is (``runs.read_log``), and said once
        (:func:`warn_once`). RecordError naming the row when a row has another number of cells than the header, or
        a number that is not one."""
        data = Path(self.log_path).read_bytes() if Path(self.log_path).exists() else b""
        if not runs.whole_rows(data):
            return {}  # no log, or not even its header written whole: the next run to be recorded starts it anew
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                log = runs.read_log(self.log_path, COLUMNS, "a log of recorded runs",
                                    " Move it aside (or delete it) to start a new one.")
            except (ValueError, TypeError) as error:
                if str(self.log_path) in str(error):  # it names the file and what to do
                    raise
                problem = checks.row_problem(data, COLUMNS) or error
                raise RecordError(f"{self.log_path} cannot be read ({problem}): correct that row by hand, or restore "
                                  "the log from its backup (.bak) or from git") from None
        for warning in caught:
            checks.warn_once(warning.message, data[len(runs.whole_rows(data)):])
        return {row["name"]: row for row in log.to_dict("records")}

    def complete(self, row, key=None, logged=None):
        """Whether ``row`` records a run (of this ``key``, when given) whose history and, unless it stands without
        them (:meth:`stands_without_weights`), weights are on disk."""
        return (row is not None and key in (None, row["key"]) and self.history_path(row["name"]).exists()
                and (self.weights_path(row["name"]).exists() or self.stands_without_weights(row, logged)))

    def pending(self, keys):
        """The names of ``keys`` (``{name: runs.run_key}``) that have no complete record of their key: the runs to
        train. RecordError when one has a complete record of another key: training it would replace that record;
        ValueError when a name is not one a record can have (:func:`check_name`)."""
        for name in keys:
            checks.check_name(name)
        logged = self.read_log()
        taken = [name for name, key in keys.items()
                 if self.complete(logged.get(name), logged=logged) and not self.complete(logged[name], key, logged)]
        if taken:
            raise RecordError(f"{', '.join(taken)} {'is' if len(taken) == 1 else 'are'} already recorded in "
                              f"{self.log_path} by a run made with other settings or data, which training under the "
                              "same name would overwrite: choose another name or output folder, or pass fresh=True "
                              "(--fresh) to replace it (its old weights and history are kept as .bak)")
        return [name for name, key in keys.items() if not self.complete(logged.get(name), key, logged)]

    def write(self, name, key, model):
        """Record a finished ``model`` under ``name``: weights, history, then its row. A file already there (a
        record being replaced, or what a run cut short left) is moved aside first (``runs.backup``: ``.bak``,
        ``.bak.1``, ...), never overwritten."""
        for path in (self.weights_path(name), self.history_path(name), self.probabilities_path(name)):
            if path.exists():
                runs.backup(path)
        if name not in self.weightless:  # a candidate of a group keeps its weights until the group has chosen
            model.save_param(self.weights_path(name))
        atomic_write(self.history_path(name), partial(model.history.to_csv, index=False))
        runs.append_rows(self.log_path, [{"name": name, "key": key, **runs.outcome(model)}], COLUMNS)

    def prune(self, names):
        """Move aside (``runs.backup``) the weights of the records of ``names`` that keep none (:meth:`keeps_weights`):
        the candidates their group did not choose, once it is recorded whole."""
        logged = self.read_log()
        for name in names:
            if name in logged and self.weights_path(name).exists() and not self.keeps_weights(name, logged):
                runs.backup(self.weights_path(name))

    def forget(self, names):
        """Rewrite the log without the rows of ``names`` (runs about to train again), a copy of it kept as a backup
        first; the other runs' rows stay as they are. Returns the backup's path, or None when there was nothing to
        forget."""
        path = Path(self.log_path)
        lines = path.read_bytes().splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if line.split(b",", 1)[0].decode() not in names]
        if len(kept) == len(lines):
            return None
        bak = runs.backup(path, copy=True)
        atomic_write(path, lambda f: f.write(b"".join(kept)))
        return bak

    def missing(self, named_settings, data):
        """The names of ``named_settings`` that have no complete record for these settings and ``data``
        (:meth:`pending`; ``data`` as :func:`fit_or_read` takes it)."""
        return self.pending(run_keys(named_settings, data))

    def read(self, name, row, settings=None, logged=None):
        """The model recorded under ``name``, with the run's history and outcome (``row``). A run that diverged
        before its first validation check kept no usable weights: it comes back with its settings and history only,
        its initial weights in place of the non-finite ones it saved; so does a run recorded without its weights
        (:meth:`stands_without_weights`, from ``logged``), from ``settings``.

        RecordError if the weights hold a model of other settings than ``settings`` (the run's ``MLP`` keyword
        arguments, when given), or the history is not the one ``row`` records."""
        path = self.weights_path(name)
        weighted = path.exists() or not self.stands_without_weights(row, logged)  # weights there are read
        if not weighted:
            if settings is None:
                raise RecordError(f"{name} is recorded without its weights in {self.log_path}: read it with its "
                                  "settings, which only they give")
            model = runs.new_model(settings)
        elif row["diverged"] and row["best_iteration"] == 0:
            config = json.loads(str(read_archive(path, ("config",), "model archive", "MLP.save_param")["config"]))
            model = runs.model_class(config)(**dict(config, print_log=False))
        else:
            model = runs.read_model(path)
        if settings is not None and weighted:
            self.check_weights(name, model.config(), settings)
        self.restore_history(name, model, row)
        return model

    def read_all(self, named_settings):
        """``{name: model}`` of the records of ``named_settings``, each checked against its settings (:meth:`read`)."""
        logged = self.read_log()
        return {name: self.read(name, logged[name], settings, logged) for name, settings in named_settings.items()}

    def check_weights(self, name, found, settings):
        """RecordError unless ``found``, the settings (``MLP.config()``) of the weights recorded under ``name``, are
        those of ``settings``, the run's as requested (completed with the constructor's defaults)."""
        wanted = runs.new_model(settings).config()
        differs = [f"{setting} {found.get(setting)!r} where the record has {value!r}"
                   for setting, value in wanted.items() if found.get(setting) != value]
        if differs:
            raise RecordError(f"{self.weights_path(name)} holds a model of other settings than the record of {name} in "
                              f"{self.log_path} ({'; '.join(differs)}): it is another run's weights. Restore the "
                              "record's own (from git, say), or pass fresh=True to train it again (the file is kept "
                              "as .bak)")

    def restore_history(self, name, model, row):
        """Give ``model`` the history recorded under ``name`` (``Solver.restore_record``); RecordError naming the
        file when it is empty, unreadable, or not the run of ``row`` (its best validation numbers differ)."""
        path = self.history_path(name)
        advice = (f"restore it (from git, say), or delete the row of {name} from {self.log_path} so that the run "
                  "trains again")
        try:
            history = runs.read_history(path, advice)
        except ValueError as error:  # its message names the file and what to do
            raise RecordError(str(error)) from None
        model.solver.restore_record(history.to_dict("records"), row["train_time_s"])
        differs = [f"{what} {found} where the row has {row[what]}" for what, found in
                   [("best_val_acc", model.best_val_acc), ("best_iteration", model.best_iteration),
                    ("diverged", model.diverged)] if not same_number(found, row[what])]
        if differs:
            raise RecordError(f"{path} is not the history of the run recorded as {name} in {self.log_path} "
                              f"({'; '.join(differs)}): {advice}")


def same_number(a, b):
    """Whether two recorded numbers agree: equal up to the last bits a CSV round trip may move, or both NaN."""
    return math.isclose(a, b, rel_tol=1e-9) or (math.isnan(a) and math.isnan(b))


def data_by_name(named_settings, data):
    """``{name: data}`` for the runs of ``named_settings``: ``data`` itself when it is already such a dict (runs
    trained on different data), else the one ``(X_train, y_train, X_val, y_val)`` for every run."""
    return data if isinstance(data, dict) else dict.fromkeys(named_settings, data)


def run_keys(named_settings, data):
    """``{name: runs.run_key}`` of each run's settings and its data (:func:`data_by_name`)."""
    each = data_by_name(named_settings, data)
    return {name: runs.run_key(settings, each[name]) for name, settings in named_settings.items()}


def fit_labelled(item, checkpoint_dir=None, fresh=False):
    """``(name, runs.fit(settings, *data))`` for an item ``(name, settings, data)``: a trained model comes back with
    its name. With ``checkpoint_dir`` the run writes ``<checkpoint_dir>/<name>.npz`` after every epoch and resumes
    from it (``fresh`` deletes it first). Module-level so that ``runs.dispatch`` can send it to joblib's workers."""
    name, settings, data = item
    checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{name}.npz"
    return name, runs.fit(settings, *data, checkpoint_path=checkpoint, fresh=fresh)


def fit_or_read(named_settings, data, records, n_jobs=1, fresh=False, fit=None, progress=True, desc="runs",
                checkpoint_dir=None):
    """``{name: model}`` for the runs of ``named_settings`` (``{name: MLP keyword arguments}``), each read from its
    record in ``records`` or, when it has none for these settings and ``data`` (``X_train, y_train, X_val, y_val``,
    data made only when a run trains, ``runs.run_key``, or a dict of either by name when the runs train on different
    data), trained and recorded first; ``fresh=True``
    trains them all again, their old rows taken out of the log (a copy of which is kept as ``.bak``), their old
    weights and histories moved to ``.bak`` (:meth:`Records.write`), and the records of other runs in the same log
    left as they are. Without ``fresh``, a name recorded by a run of other settings or data is a RecordError
    (:meth:`Records.pending`), before anything trains; every record read back is checked against its settings and
    row (:meth:`Records.read`).

    When every run is recorded this only reads: no lock, no file written (a torn last row of the log is skipped in
    memory). Otherwise it holds the log's lock (``runs.prepared_log``, which drops a torn row) while it trains.

    The runs to train go ``n_jobs`` at a time through ``runs.dispatch`` (one BLAS thread each), or, given ``fit``
    (``fit(settings, *data)``, a long run under its own progress bar, say), one after the other here, with the
    threads this process has. Every model returned is read from its record, whether it trained now or before. With
    ``checkpoint_dir``, a dispatched run writes a checkpoint there after every epoch (see :func:`fit_labelled`): a
    long run cut short goes on from its last epoch, and its checkpoint is deleted once the run is recorded. Once
    they are recorded, the candidates that their group did not choose give up their weights (:meth:`Records.prune`).
    """
    for name in named_settings:  # before the log is touched, even by fresh
        checks.check_name(name)
    keys, each = run_keys(named_settings, data), data_by_name(named_settings, data)
    if not fresh and not records.pending(keys):  # all recorded: a read, which takes no lock and writes nothing
        return records.read_all(named_settings)
    with runs.prepared_log(records.log_path, COLUMNS):
        if fresh:
            records.forget(set(named_settings))
        pending = [(name, named_settings[name], runs.data_arrays(each[name])) for name in records.pending(keys)]
        if fit is None:
            trained = runs.dispatch(fit_labelled, pending, n_jobs=n_jobs, checkpoint_dir=checkpoint_dir, fresh=fresh)
        else:
            runs.count_started(len(pending))
            trained = ((name, fit(settings, *data)) for name, settings, data in pending)
        with tqdm(total=len(named_settings), initial=len(named_settings) - len(pending), desc=desc, unit="run",
                  disable=not progress or not pending, file=sys.stdout) as bar:
            for name, model in trained:
                records.write(name, keys[name], model)
                if checkpoint_dir is not None:
                    (Path(checkpoint_dir) / f"{name}.npz").unlink(missing_ok=True)
                bar.update()
                bar.set_postfix(last=name, val_acc=f"{model.best_val_acc:.4f}")
        records.prune(named_settings)
        return records.read_all(named_settings)
