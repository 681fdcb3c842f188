"""Hyperparameter grid search for the NumPy MLP, with a resumable CSV log.

Each finished run appends one row to the log and writes its training history to
``history_dir/<run_name>.csv``. Calling :func:`grid_search` again skips the runs already
logged, so an interrupted search continues where it stopped. Model selection uses
validation numbers only; the test set never enters this module.
"""

import os
import shutil
import sys
from functools import partial
from pathlib import Path

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from modules import MLP, atomic_write
from study import config

# A run's settings under the names of the MLP constructor's arguments, then its outcome under the model's attribute
# names: one vocabulary from the constructor to the log.
SETTINGS = ["layers", "lr", "L2_lambda"]
LOG_COLUMNS = [*SETTINGS, "best_val_acc", "best_val_loss", "train_time_s", "best_iteration", "diverged"]

_LOG_DTYPES = {
    "layers": str,
    "lr": float,
    "L2_lambda": float,
    "best_val_acc": float,
    "best_val_loss": float,
    "train_time_s": float,
    "best_iteration": int,
    "diverged": bool,
}


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
    """Hashable identity of a run's settings (a settings dict or a log row), robust to float formatting."""
    return (layers_name(settings["layers"]), _fmt(settings["lr"]), _fmt(settings["L2_lambda"]))


def settings_from_row(row):
    """The settings dict of a log row: its ``layers`` name back to a tuple of sizes."""
    return config.settings(str(row["layers"]).split("-"), row["lr"], row["L2_lambda"])


def train_run(settings, X_train, y_train, X_val, y_val, n_threads, **model_kwargs):
    """Train one model of the grid; return ``(log row dict, history DataFrame)``.

    Module-level so joblib can send it to worker processes. ``n_threads`` caps the BLAS
    threads so that parallel workers do not oversubscribe the CPU; None leaves them as the
    worker has them (see :func:`blas_threads`).
    """
    with threadpool_limits(limits=n_threads):
        model = MLP(
            list(settings["layers"]),
            lr=settings["lr"],
            L2_lambda=settings["L2_lambda"],
            print_log=False,
            **model_kwargs,
        )
        history = model.train(X_train, y_train, X_val, y_val)
    return log_row(settings, model), history


def log_row(settings, model):
    """The log's row of a trained model: its settings and its best validation numbers, as plain Python values."""
    return {
        "layers": layers_name(settings["layers"]),
        "lr": float(settings["lr"]),
        "L2_lambda": float(settings["L2_lambda"]),
        "best_val_acc": float(model.best_val_acc),
        "best_val_loss": float(model.best_val_loss),
        "train_time_s": float(model.train_time_s),
        "best_iteration": int(model.best_iteration),
        "diverged": bool(model.diverged),
    }


def read_log(log_path):
    """Read a grid-search log, checking that its columns are :data:`LOG_COLUMNS`."""
    log = pd.read_csv(log_path, dtype={"layers": str})
    if list(log.columns) != LOG_COLUMNS:
        raise ValueError(
            f"{log_path} was written by an older or different grid search: found columns "
            f"{list(log.columns)}, expected {LOG_COLUMNS}. Pass rerun=True to start a new log "
            f"(the old one is kept as a .bak file) or delete the file; rows of different formats "
            f"are never mixed."
        )
    return log.astype(_LOG_DTYPES)


def _ranked(log):
    """Non-diverged runs, best validation accuracy first (ties: lower validation loss)."""
    ok = log[~log["diverged"].astype(bool) & log["best_val_acc"].notna()]
    return ok.sort_values(["best_val_acc", "best_val_loss"], ascending=[False, True], kind="mergesort")


def best_settings(log):
    """Settings of the best non-diverged run: ``dict(layers=tuple, lr=, L2_lambda=)``."""
    ranked = _ranked(log)
    if ranked.empty:
        raise ValueError("the log holds no finished, non-diverged run")
    return settings_from_row(ranked.iloc[0])


def top_k(log, k=5):
    """The ``k`` best non-diverged runs, sorted by validation accuracy (descending)."""
    return _ranked(log).head(k).reset_index(drop=True)


def append_rows(path, df, header):
    """Append ``df`` to the CSV file ``path`` and make it durable before returning.

    One small append and fsync per finished run: a crash loses at most the runs in flight.
    """
    with open(path, "a", newline="") as f:
        df.to_csv(f, index=False, header=header)
        f.flush()
        os.fsync(f.fileno())


def logged_runs(log_path):
    """How many finished runs a grid-search log holds (0 if there is none), i.e. how many a resume skips.

    Counts complete lines after the header, so a row torn by a crash, which the grid search drops and trains
    again, is not counted.
    """
    log_path = Path(log_path)
    if not log_path.exists():
        return 0
    return max(0, log_path.read_bytes().count(b"\n") - 1)


def _prepare_log(log_path):
    """Create the log with its header if needed; drop a row torn by a crash mid-write."""
    if log_path.exists():
        with open(log_path, "rb+") as f:
            data = f.read()
            if not data.endswith(b"\n"):
                # The torn run is simply trained again; appending after it would corrupt the next row.
                f.truncate(data.rfind(b"\n") + 1)
    if not log_path.exists() or log_path.stat().st_size == 0:
        append_rows(log_path, pd.DataFrame(columns=LOG_COLUMNS), header=True)


def backup(path):
    """Move ``path`` aside to ``<path>.bak``, replacing an older backup."""
    bak = path.with_name(path.name + ".bak")
    if bak.is_dir():
        shutil.rmtree(bak)
    os.replace(path, bak)


def _postfix(bar, log):
    ranked = _ranked(log)
    if not ranked.empty:
        best = ranked.iloc[0]
        bar.set_postfix(best_val_acc=f"{best['best_val_acc']:.4f}", best=run_name(settings_from_row(best)))


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


def grid_search(
    grid,
    X_train,
    y_train,
    X_val,
    y_val,
    log_path,
    history_dir,
    rerun=False,
    n_jobs=1,
    progress=True,
    **model_kwargs,
):
    """Train one MLP per settings dict of ``grid`` and return the whole log as a DataFrame.

    Runs already in ``log_path`` are skipped; ``rerun=True`` moves the old log and history
    folder to ``.bak`` and trains everything again. ``model_kwargs`` go to :class:`MLP`
    (activation, max_epoch, batch_size, seed, ...). All runs share the same seed, so a
    run's numbers depend only on its settings, not on the order or on ``n_jobs``.
    ``n_jobs > 1`` trains in joblib workers (loky unless ``joblib.parallel_config`` says
    otherwise); only this process writes the log and the history files. Under
    ``joblib.parallel_config(backend="dask")`` the cluster's worker threads decide how many
    runs train at once: n_jobs only has to differ from 1, which always trains in this process.
    """
    log_path, history_dir = Path(log_path), Path(history_dir)
    if rerun:
        for path in (log_path, history_dir):
            if path.exists():
                backup(path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    history_dir.mkdir(parents=True, exist_ok=True)
    _prepare_log(log_path)
    log = read_log(log_path)

    done = {settings_key(row) for row in log.to_dict("records")}
    todo = {}  # dict keeps grid order and drops duplicate settings
    for s in grid:
        todo.setdefault(settings_key(s), s)
    pending = [s for k, s in todo.items() if k not in done]

    n_threads = blas_threads(n_jobs)
    data = (X_train, y_train, X_val, y_val)
    if n_jobs == 1 or not pending:
        # In-process: no pickling of the data, and a plain traceback if a run fails.
        results = (train_run(s, *data, n_threads, **model_kwargs) for s in pending)
    else:
        results = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            joblib.delayed(train_run)(s, *data, n_threads, **model_kwargs) for s in pending
        )

    with tqdm(
        total=len(todo),
        initial=len(todo) - len(pending),
        desc="grid search",
        unit="run",
        disable=not progress,
        # Plain text on stdout: a saved notebook then shows the finished bar wherever it is read, GitHub included.
        file=sys.stdout,
    ) as bar:
        _postfix(bar, log)
        rows = log.to_dict("records")
        for row, history in results:
            append_rows(log_path, pd.DataFrame([row], columns=LOG_COLUMNS), header=False)
            path = history_dir / f"{run_name(settings_from_row(row))}.csv"
            atomic_write(path, partial(history.to_csv, index=False))
            rows.append(row)
            bar.update()
            _postfix(bar, pd.DataFrame(rows, columns=LOG_COLUMNS))
    return read_log(log_path)
