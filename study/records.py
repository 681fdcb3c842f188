"""Finished runs kept on disk and read back instead of trained again: what lets the notebook resume its models.

A run's record is three things, written in this order when it finishes:

- its best-validation weights, ``<weights_dir>/<name>.npz`` (``MLP.save_param``, with its settings);
- its history, ``<history_dir>/<name>.csv``;
- a row of the log (``name``, ``key``, then ``runs.outcome``): the row is the record's seal, so a run cut short
  before it is trained again.

The ``key`` is ``runs.run_key`` of the run's settings and data, so a record is read back only for the same settings
and the same data; a record with a missing file is trained again, and only that one. A record read back is a
``MLP.from_file`` model whose Solver takes up the recorded history (``Solver.restore_record``): it predicts, and it
reports its ``history``, ``best_val_acc``, ``epoch`` and ``train_time_s``, as the model that trained did.
"""

import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from fileio import atomic_write, read_archive
from modules import MLP
from study import runs

COLUMNS = ["name", "key", *runs.OUTCOMES]


@dataclass(frozen=True)
class Records:
    """Where the records of a group of runs live: their log, their histories and their weights."""

    log_path: Path
    history_dir: Path
    weights_dir: Path

    def weights_path(self, name):
        return Path(self.weights_dir) / f"{name}.npz"

    def history_path(self, name):
        return Path(self.history_dir) / f"{name}.csv"

    def read_log(self):
        """The log's rows by name, the last of each name (a run trained again appends a new row); none when there
        is no log."""
        if not Path(self.log_path).exists():
            return {}
        log = runs.read_log(self.log_path, COLUMNS, "a log of recorded runs",
                            " Move it aside (or delete it) to start a new one.")
        return {row["name"]: row for row in log.to_dict("records")}

    def complete(self, row, key):
        """Whether ``row`` records a run of this ``key`` whose weights and history are both on disk."""
        return (row is not None and row["key"] == key and self.weights_path(row["name"]).exists()
                and self.history_path(row["name"]).exists())

    def write(self, name, key, model):
        """Record a finished ``model`` under ``name``: weights, history, then its row."""
        model.save_param(self.weights_path(name))
        atomic_write(self.history_path(name), partial(model.history.to_csv, index=False))
        runs.append_rows(self.log_path, [{"name": name, "key": key, **runs.outcome(model)}], COLUMNS)

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
        """The names of ``named_settings`` that have no complete record for these settings and ``data``."""
        logged = self.read_log()
        return [name for name, settings in named_settings.items()
                if not self.complete(logged.get(name), runs.run_key(settings, data))]

    def read(self, name, row):
        """The model recorded under ``name``, with the run's history and outcome (``row``). A run that diverged
        before its first validation check kept no usable weights: it comes back with its settings and history only,
        its initial weights in place of the non-finite ones it saved."""
        path = self.weights_path(name)
        if row["diverged"] and row["best_iteration"] == 0:
            config = json.loads(str(read_archive(path, ("config",), "model archive", "MLP.save_param")["config"]))
            model = MLP(**dict(config, print_log=False))
        else:
            model = MLP.from_file(path, print_log=False)
        history = pd.read_csv(self.history_path(name))
        model.solver.restore_record(history.to_dict("records"), row["train_time_s"])
        return model


def fit_labelled(item, *data, checkpoint_dir=None, fresh=False):
    """``(name, runs.fit(settings, *data))`` for an item ``(name, settings)``: a trained model comes back with its
    name. With ``checkpoint_dir`` the run writes ``<checkpoint_dir>/<name>.npz`` after every epoch and resumes from
    it (``fresh`` deletes it first). Module-level so that ``runs.dispatch`` can send it to joblib's workers."""
    name, settings = item
    checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{name}.npz"
    return name, runs.fit(settings, *data, checkpoint_path=checkpoint, fresh=fresh)


def fit_or_read(named_settings, data, records, n_jobs=1, fresh=False, fit=None, progress=True, desc="runs",
                checkpoint_dir=None):
    """``{name: model}`` for the runs of ``named_settings`` (``{name: MLP keyword arguments}``), each read from its
    record in ``records`` or, when it has none for these settings and ``data`` (``X_train, y_train, X_val, y_val``),
    trained and recorded first; ``fresh=True`` trains them all again, their old rows taken out of the log (a copy of
    which is kept as ``.bak``) and the records of other runs in the same log left as they are.

    The runs to train go ``n_jobs`` at a time through ``runs.dispatch`` (one BLAS thread each), or, given ``fit``
    (``fit(settings, *data)``, a long run under its own progress bar, say), one after the other here, with the
    threads this process has. Every model returned is read from its record, whether it trained now or before. With
    ``checkpoint_dir``, a dispatched run writes a checkpoint there after every epoch (see :func:`fit_labelled`): a
    long run cut short goes on from its last epoch, and its checkpoint is deleted once the run is recorded.
    """
    with runs.prepared_log(records.log_path, COLUMNS):
        if fresh:
            records.forget(set(named_settings))
        keys = {name: runs.run_key(settings, data) for name, settings in named_settings.items()}
        logged = records.read_log()
        pending = [(name, settings) for name, settings in named_settings.items()
                   if not records.complete(logged.get(name), keys[name])]
        if fit is None:
            trained = runs.dispatch(fit_labelled, pending, *data, n_jobs=n_jobs, checkpoint_dir=checkpoint_dir,
                                    fresh=fresh)
        else:
            runs.count_started(len(pending))
            trained = ((name, fit(settings, *data)) for name, settings in pending)
        with tqdm(total=len(named_settings), initial=len(named_settings) - len(pending), desc=desc, unit="run",
                  disable=not progress or not pending, file=sys.stdout) as bar:
            for name, model in trained:
                records.write(name, keys[name], model)
                if checkpoint_dir is not None:
                    (Path(checkpoint_dir) / f"{name}.npz").unlink(missing_ok=True)
                bar.update()
                bar.set_postfix(last=name, val_acc=f"{model.best_val_acc:.4f}")
        logged = records.read_log()
        return {name: records.read(name, logged[name]) for name in named_settings}
