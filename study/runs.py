"""What the grid search, successive halving and section 7 share: a run's settings and their names, training one run,
the one parallel dispatcher, the CSV logs, and the one rule for which run is better.

A run's settings are ``dict(layers=, lr=, L2_lambda=)``, the names of the ``MLP`` constructor's arguments
(``config.settings``). A log row holds them under the same names (``layers`` as the text ``"784-256-128-10"``) and
then the run's outcome under the model's attribute names (``best_val_acc``, ``best_val_loss``, ``best_iteration``,
``train_time_s``, ``diverged``): one vocabulary from the constructor to the log and the history file names.
"""

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import solver
from conv import CNN
from fileio import atomic_write, fingerprint, read_archive
from modules import MLP

SETTINGS = ["layers", "lr", "L2_lambda"]
OUTCOMES = ["best_val_acc", "best_val_loss", "train_time_s", "best_iteration", "diverged"]
DTYPES = {"rung": int, "name": str, "layers": str, "lr": float, "L2_lambda": float, "epochs": int, "max_epoch": int,
          "key": str, "best_val_acc": float, "best_val_loss": float, "train_time_s": float, "best_iteration": int,
          "diverged": bool, "val_images": int, "seed": int, "test_correct": int, "test_images": int,
          "iteration": int, "epoch": int, "train_loss": float, "train_acc": float, "val_loss": float, "val_acc": float}

# -- a run's settings and their names ----------------------------------------------------------------------------


def _fmt(x):
    # 12 significant digits: exact for any value typed by hand, and it absorbs the
    # last-bit noise a float can pick up on a CSV round trip.
    return f"{float(x):.12g}"


def layers_name(layers):
    """``[784, 256, 128, 10]`` -> ``"784-256-128-10"``, as the log writes layer sizes (a name passes through)."""
    return layers if isinstance(layers, str) else "-".join(str(int(n)) for n in layers)


def run_name(settings):
    """Filesystem-safe name of one run, e.g. ``"784-256-128-10_lr0.01_L2_lambda0.001"``: the constructor's names."""
    return f"{layers_name(settings['layers'])}_lr{_fmt(settings['lr'])}_L2_lambda{_fmt(settings['L2_lambda'])}"


def settings_key(settings):
    """Hashable identity of a run's settings (a settings dict, a log row or ``MLP.config()`` alike), robust to float
    formatting."""
    return (layers_name(settings["layers"]), _fmt(settings["lr"]), _fmt(settings["L2_lambda"]))


def unique_settings(grid):
    """``{settings_key: settings}`` of the settings dicts of ``grid``, in grid order, each setting once (the first)."""
    unique = {}
    for settings in grid:
        unique.setdefault(settings_key(settings), settings)
    return unique


# -- one run -------------------------------------------------------------------------------------------------------


def model_class(settings):
    """The class of the network that ``settings`` (constructor keyword arguments, or a ``config()``) build: a
    ``conv.CNN`` when they name its convolutions' ``channels``, else an ``MLP``."""
    return CNN if "channels" in settings else MLP


def new_model(settings):
    """A quiet ``MLP(**settings)`` (or ``conv.CNN``, :func:`model_class`): ``settings`` holds the constructor's
    keyword arguments, ``layers`` as any sequence."""
    return model_class(settings)(**dict(settings, layers=list(settings["layers"]), print_log=False))


def saved_class(path, kind, writer):
    """The class of the network saved at ``path`` (a model archive or a training checkpoint, a ``kind`` that
    ``writer`` writes), from its settings alone (:func:`model_class`): the archive's other arrays are not read."""
    arrays = read_archive(path, (), kind, writer, only=("config",))
    return model_class(json.loads(str(arrays["config"])) if "config" in arrays else {})


def read_model(path):
    """The quiet model saved at ``path`` (``MLP.save_param``), of the class its settings build."""
    return saved_class(path, "model archive", "MLP.save_param").from_file(path, print_log=False)


def resume(checkpoint_path):
    """The quiet model of the run whose checkpoint is at ``checkpoint_path`` (``MLP.from_checkpoint``), of the
    class its settings build."""
    kind = saved_class(checkpoint_path, "training checkpoint", "train(..., checkpoint_path=...)")
    return kind.from_checkpoint(checkpoint_path, print_log=False)


def fit(settings, X_train, y_train, X_val, y_val, save_path=None, checkpoint_path=None, fresh=False, on_epoch=None):
    """Train :func:`new_model` of ``settings`` and return it (it holds its best-validation weights); ``on_epoch(model)``
    is called after every epoch (a progress bar, say).

    With ``checkpoint_path`` the run writes its state there after every epoch and, when a checkpoint of the same
    settings is already there, resumes it instead of starting over: an interrupted run loses at most one epoch, and
    a finished one is not trained again. ``fresh=True`` deletes that checkpoint first.
    """
    model = new_model(settings)
    if checkpoint_path is not None and fresh:
        Path(checkpoint_path).unlink(missing_ok=True)
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        resumed = resume(checkpoint_path)
        if resumed.config() != model.config():
            raise ValueError(f"{checkpoint_path} holds a run of other settings ({resumed.config()}); delete it "
                             f"(or pass fresh=True) to train {model.config()} from the start")
        model = resumed
    model.train(X_train, y_train, X_val, y_val, save_path=save_path, checkpoint_path=checkpoint_path,
                on_epoch=on_epoch)
    return model


def outcome(model):
    """What a trained model's run came to, under the model's own attribute names, as plain Python values."""
    return {"best_val_acc": float(model.best_val_acc), "best_val_loss": float(model.best_val_loss),
            "train_time_s": float(model.train_time_s), "best_iteration": int(model.best_iteration),
            "diverged": bool(model.diverged)}


def log_row(settings, model):
    """The log's row of a trained model: its settings, then its :func:`outcome`."""
    return {"layers": layers_name(settings["layers"]), "lr": float(settings["lr"]),
            "L2_lambda": float(settings["L2_lambda"]), **outcome(model)}


# -- where the runs train ------------------------------------------------------------------------------------------


def blas_threads(n_jobs):
    """BLAS threads for each run of a search with ``n_jobs`` workers: 1 when the workers run here, else None.

    One thread per run whatever ``n_jobs`` is: OpenBLAS splits a product differently for another thread count, which
    moves the last bits of the float32 sums, and SGD magnifies them; with one thread per run the log holds the same
    numbers for every ``n_jobs``, and the cores are used by training ``n_jobs`` runs at once. Under another backend
    (dask, ray, ...) the workers run on other machines: None leaves their BLAS threads as the cluster set them (a
    dask worker started by its nanny has OMP/MKL/OPENBLAS_NUM_THREADS=1, one thread per running task).
    """
    here = tuple(joblib.parallel.BACKENDS[name] for name in ("loky", "multiprocessing", "threading", "sequential")
                 if name in joblib.parallel.BACKENDS)
    if n_jobs != 1 and not isinstance(joblib.parallel.get_active_backend()[0], here):
        return None
    return 1


def in_process(n_jobs):
    """Whether :func:`dispatch` calls the function here, one call after the other: with ``n_jobs == 1``."""
    return n_jobs == 1


class _WithThreads:
    """``function`` called under a BLAS thread limit; picklable, and named after ``function`` (joblib and dask name
    their tasks after it)."""

    def __init__(self, function, n_threads):
        functools.update_wrapper(self, function)
        self.function, self.n_threads = function, n_threads

    def __call__(self, *args, **kwargs):
        with threadpool_limits(limits=self.n_threads):
            return self.function(*args, **kwargs)


runs_started = 0  # runs this process has sent to train: 0 after a notebook that only read what was recorded


def count_started(n_runs):
    """Count ``n_runs`` more runs started by this process (:func:`dispatch` counts those it sends)."""
    global runs_started
    runs_started += n_runs


def dispatch(function, items, *args, n_jobs=1, ordered=False, **kwargs):
    """``function(item, *args, **kwargs)`` for every item, each with :func:`blas_threads` ``(n_jobs)`` BLAS threads;
    an iterator over the results as they come (in the items' order with ``ordered=True``).

    With ``n_jobs == 1`` (or no items) the calls run here, lazily, one at a time: no pickling of the data, and a plain
    traceback if one fails. Otherwise they run in joblib's workers, ``n_jobs`` at a time (loky unless
    ``joblib.parallel_config`` says otherwise; under ``backend="dask"`` the cluster's worker threads decide how many,
    and ``n_jobs`` only has to differ from 1). ``function`` must be defined at the top level of a module so that
    joblib can send it.
    """
    call, items = _WithThreads(function, blas_threads(n_jobs)), list(items)
    count_started(len(items))
    if in_process(n_jobs) or not items:  # nothing to do starts no workers
        return (call(item, *args, **kwargs) for item in items)
    return joblib.Parallel(n_jobs=n_jobs, return_as="generator" if ordered else "generator_unordered")(
        joblib.delayed(call)(item, *args, **kwargs) for item in items)


# -- the CSV logs ---------------------------------------------------------------------------------------------------


def start_log(path, columns):
    """A new log at ``path`` holding only the header line of ``columns``, written atomically."""
    atomic_write(path, lambda f: pd.DataFrame(columns=columns).to_csv(f, index=False))


def append_rows(path, rows, columns):
    """Append ``rows`` (dicts) to the CSV log ``path`` and make them durable before returning.

    One small append and fsync per finished run: a crash loses at most the runs in flight.
    """
    with open(path, "a", newline="") as f:
        pd.DataFrame(rows, columns=columns).to_csv(f, index=False, header=False)
        f.flush()
        os.fsync(f.fileno())


def run_key(settings, data):
    """A short hash of a run's ``settings`` (``MLP`` keyword arguments) and of its ``data``: the arrays
    ``(X_train, y_train, X_val, y_val)``, or data made only when the run trains (an object with ``described()``,
    what its key hashes, and ``arrays()``: ``study.finals.Taught``). Rows of the log with this key were trained so."""
    described = json.dumps({"settings": dict(settings, layers=list(settings["layers"])),
                            "data": data.described() if hasattr(data, "described") else fingerprint(*data)},
                           sort_keys=True, default=str)
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def data_arrays(data):
    """The arrays a run trains on: ``data`` itself, or what data made only when the run trains makes (see
    :func:`run_key`)."""
    return data.arrays() if hasattr(data, "arrays") else data


def whole_rows(data):
    """The bytes of a log up to its last line end: a row that a crash cut short (no line end) left out."""
    return data[:data.rfind(b"\n") + 1]


def drop_torn_row(log_path):
    """A row that a crash cut short (no line end) is removed: its run trains again, and the next row starts on a
    line of its own. Only a search that holds the log's lock does this (:func:`prepared_log`); a read leaves the
    file as it is and skips that row (:func:`read_log`)."""
    if log_path.exists():
        with open(log_path, "rb+") as f:
            f.truncate(len(whole_rows(f.read())))
        if log_path.stat().st_size == 0:  # not even the header was whole
            log_path.unlink()


def read_log(path, columns, what, advice="", key=None):
    """Read the CSV log at ``path``, checking that its columns are ``columns``; ValueError otherwise, naming ``what``
    the log should be, followed by ``advice``.

    True and false may be spelled as pandas and people write them (``True``, ``false``, ``1``, ``no``); any other
    value of a boolean column is an error that names it. With ``key`` (a function of a row), rows of the same key
    are one run logged twice: the last one counts, and a warning says so. Blank lines are skipped.

    A last row that a crash cut short (no line end) is skipped here, with a warning, and the file left as it is: a
    read needs no write access and takes no lock. The next search that writes the log drops that row under the
    log's lock (:func:`prepared_log`) and trains its run again."""
    data = Path(path).read_bytes()
    whole = whole_rows(data)
    if whole != data:
        warnings.warn(f"{path}: its last row was cut short (by a crash while it was written?) and is left out; the "
                      "next search that writes this log drops it", stacklevel=2)
    log = pd.read_csv(io.BytesIO(whole), dtype={column: str for column in columns if DTYPES.get(column) is str})
    if list(log.columns) != list(columns):
        raise ValueError(f"{path} is not {what}: found columns {list(log.columns)}, expected {list(columns)}.{advice}")
    for column in columns:
        if DTYPES.get(column) is bool:
            log[column] = parse_booleans(log[column], path, column)
    log = log.astype({column: DTYPES[column] for column in columns})
    if key is not None and len(log):
        keys = [key(row) for row in log.to_dict("records")]
        repeated = pd.Series(keys).duplicated(keep="last").to_numpy()
        if repeated.any():
            warnings.warn(f"{path} logs {int(repeated.sum())} runs more than once (rows of the same run): the last row "
                          "of each counts", stacklevel=2)
            log = log[~repeated].reset_index(drop=True)
    return log


def read_history(path, advice):
    """The training history at ``path`` (a CSV of ``solver.HISTORY_COLUMNS``, a row per validation check) as a
    DataFrame of their types; ValueError naming the file, followed by ``advice`` (what to do), when it is empty,
    holds only its header, lacks a column or holds a value of another type."""
    try:
        history = pd.read_csv(path)
        lacking = [column for column in solver.HISTORY_COLUMNS if column not in history.columns]
        if lacking or history.empty:
            raise ValueError(f"it lacks the columns {lacking}" if lacking else "it holds no rows")
        history["diverged"] = parse_booleans(history["diverged"], path, "diverged")
        return history.astype({column: DTYPES[column] for column in solver.HISTORY_COLUMNS})
    except (ValueError, TypeError) as error:  # pandas' EmptyDataError and ParserError are ValueErrors
        raise ValueError(f"{path} is not a readable training history ({error}): {advice}") from None


BOOLEANS = {"true": True, "1": True, "1.0": True, "yes": True, "false": False, "0": False, "0.0": False, "no": False}


def parse_booleans(values, path, column):
    """A column of true and false values, however spelled (see :data:`BOOLEANS`); ValueError naming any other."""
    if values.dtype == bool:
        return values
    spelled = values.astype(str).str.strip().str.lower()
    unknown = sorted(set(spelled) - set(BOOLEANS))
    if unknown:
        raise ValueError(f"{path}: column {column!r} must hold true or false, found {unknown}; correct those cells "
                         "(True or False) or restore the log from its backup")
    return spelled.map(BOOLEANS).astype(bool)


def find_row(log, settings):
    """The row of ``settings`` in ``log``, as a dict; KeyError when the log holds no run of them."""
    wanted = settings_key(settings)
    for row in log.to_dict("records"):
        if settings_key(row) == wanted:
            return row
    raise KeyError(f"{run_name(settings)} is not in the log")


def backup(path, copy=False):
    """Move ``path`` (a file or a folder) aside to ``<path>.bak``, or ``.bak.1``, ``.bak.2``, ... when that is taken
    (with ``copy``, a file is copied there instead): no backup is ever replaced, so two interrupted reruns cannot lose
    the last complete log. Returns where it went."""
    bak, generation = path.with_name(path.name + ".bak"), 0
    while bak.exists():
        generation += 1
        bak = path.with_name(f"{path.name}.bak.{generation}")
    if copy:
        shutil.copy2(path, bak)
    else:
        os.replace(path, bak)
    return bak


class LogInUse(RuntimeError):
    """Another search holds the lock of the log."""


@contextlib.contextmanager
def exclusive(log_path):
    """Hold ``<log_path>.lock`` while a search writes ``log_path``: a second search on the same log fails at once.

    The lock is the operating system's (``flock``), so it is released when the search ends, however it ends: on
    return, on an exception, or when its process is killed.
    """
    lock_path = Path(log_path).with_name(Path(log_path).name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LogInUse(f"another search is writing {log_path} right now (it holds {lock_path}); wait for it to "
                           "end, or give this search another log_path") from None
        yield


@contextlib.contextmanager
def prepared_log(log_path, columns, fresh=False, also=()):
    """Hold the lock of the CSV log at ``log_path`` (:func:`exclusive`) with the log ready to append to: moved aside
    first, with the files or folders of ``also`` (its recipe record, its histories), when ``fresh``; a row torn by a
    crash dropped; a header of ``columns`` written when there is no log."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(log_path):
        if fresh:
            for path in (log_path, *also):
                if Path(path).exists():
                    backup(Path(path))
        drop_torn_row(log_path)
        if not log_path.exists():
            start_log(log_path, columns)
        yield log_path


def keyed_runs(settings_list, data, log_path, columns, what, row_of, postfix, n_jobs=1, fresh=False, progress=True,
               desc="runs"):
    """Train the runs of ``settings_list`` (``MLP`` keyword arguments) that the CSV log at ``log_path`` does not hold
    yet, ``n_jobs`` at a time on ``data[:4]`` (``X_train, y_train, X_val, y_val``), appending each one's row as it
    finishes; return the rows of all of them, in the order of ``settings_list``.

    The runs differ by the setting ``columns[0]`` names (``seed``, ``max_epoch``: a name of the constructor and of
    the model alike). A row holds that value, its ``key`` (:func:`run_key` of the settings and all of ``data``), then
    ``row_of(model)``: only rows of the same settings and data are read back, so an interrupted search goes on where
    it stopped. ``fresh=True`` keeps the old log as a backup and trains every run. ``what`` names the log in the error
    about misfit columns; the progress bar (``desc``) shows ``postfix(row)`` of the last run.
    """
    name = columns[0]
    values = [int(settings[name]) for settings in settings_list]
    with prepared_log(log_path, columns, fresh) as log_path:  # one search per log at a time
        log = read_log(log_path, columns, what, " Pass fresh=True to start a new one (the old one is kept as .bak).",
                       key=lambda row: (row[name], row["key"]))
        return _keyed_runs(settings_list, values, data, log_path, log, columns, row_of, postfix, n_jobs, progress,
                           desc)


def _keyed_runs(settings_list, values, data, log_path, log, columns, row_of, postfix, n_jobs, progress, desc):
    """The runs of :func:`keyed_runs` once its log is read (``log``), under its lock."""
    name = columns[0]
    keys = {value: run_key(settings, data) for value, settings in zip(values, settings_list, strict=True)}
    found = {(row[name], row["key"]): row for row in log.to_dict("records")}
    rows = {value: found[(value, keys[value])] for value in values if (value, keys[value]) in found}
    pending = [settings for value, settings in zip(values, settings_list, strict=True) if value not in rows]

    results = dispatch(fit, pending, *data[:4], n_jobs=n_jobs)
    with tqdm(total=len(values), initial=len(rows), desc=desc, unit="run", disable=not progress,
              file=sys.stdout) as bar:
        for model in results:
            value = int(getattr(model, name))
            row = {name: value, "key": keys[value], **row_of(model)}
            append_rows(log_path, [row], columns)
            rows[value] = row
            bar.update()
            bar.set_postfix(postfix(row))
    return [rows[value] for value in values]


# -- which run is better -------------------------------------------------------------------------------------------

_UNUSABLE = solver.rank_key(math.nan, math.nan)  # where a run without usable validation numbers sorts


def ranked(log, usable_only=True):
    """The rows of ``log`` best first by ``solver.rank_key``, the one rule for which run is better: higher
    ``best_val_acc``, then lower ``best_val_loss``; diverged runs and runs without finite numbers last, or left out
    with ``usable_only``. The sort is stable: runs equal on both numbers keep their order in ``log``."""
    keys = [solver.rank_key(acc, loss, diverged) for acc, loss, diverged
            in zip(log["best_val_acc"], log["best_val_loss"], log["diverged"], strict=True)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    if usable_only:
        order = [i for i in order if keys[i] < _UNUSABLE]
    return log.iloc[order]
