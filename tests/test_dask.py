"""grid_search on a Dask cluster through joblib's dask backend: the same numbers as in this process.

Starts a two-worker LocalCluster on this machine, which takes a few seconds; skipped without dask.distributed.
"""

import os

import joblib
import pandas as pd
import pytest

from study import config, grid, runs

distributed = pytest.importorskip("dask.distributed")

MODEL_KWARGS = {"max_epoch": 2, "batch_size": 50, "print_iter": 2, "seed": 0}
KEY = ["layers", "lr", "L2_lambda"]
NUMBERS = ["best_val_acc", "best_val_loss", "best_iteration", "diverged"]


@pytest.fixture(scope="module")
def client():
    # The nannies write their workers' settings (OMP_NUM_THREADS=1, ...) into this process's environment and leave
    # them there; put it back as it was for the tests that follow.
    environ = dict(os.environ)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
    os.environ.clear()
    os.environ.update(environ)


def search(data, tmp_path, name, **kwargs):
    settings_grid = config.make_grid([0.01, 0.1], [(20, 8, 3)], [0.0, 1e-3])
    return grid.grid_search(settings_grid, *data, tmp_path / f"{name}.csv", tmp_path / name, progress=False,
                              **MODEL_KWARGS, **kwargs)


def test_grid_on_dask_matches_serial(client, data, tmp_path):
    serial = search(data, tmp_path, "serial", n_jobs=1)
    with distributed.get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
        on_dask = search(data, tmp_path, "dask", n_jobs=-1)
    # The runs did go through the cluster's workers, in joblib's batches of calls.
    assert sum("train_run" in task["key"] for task in stream.data) >= 1
    assert len(on_dask) == 4
    assert not on_dask.duplicated(KEY).any()
    serial = serial[KEY + NUMBERS].sort_values(KEY).reset_index(drop=True)
    on_dask = on_dask[KEY + NUMBERS].sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(serial, on_dask)
    assert len(list((tmp_path / "dask").glob("*.csv"))) == 4


def test_workers_keep_their_own_blas_threads(client, data, tmp_path, monkeypatch):
    """This machine's core count says nothing about the workers': under dask a run does not re-limit BLAS."""
    real = grid.train_run

    def spying(settings, *args, **kwargs):
        from threadpoolctl import threadpool_info

        threads = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        row, history = real(settings, *args, **kwargs)
        return row, history.assign(blas_threads=threads)

    monkeypatch.setattr(grid, "train_run", spying)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # a client with more cores than the whole cluster
    with joblib.parallel_config(backend="dask"):
        assert runs.blas_threads(-1) is None  # the limit runs.dispatch puts on each run: none
        search(data, tmp_path, "dask", n_jobs=-1)
    histories = [pd.read_csv(path) for path in (tmp_path / "dask").glob("*.csv")]
    assert len(histories) == 4
    # Each worker's nanny set one BLAS thread; 8 client cores // 2 cluster threads would have made it 4.
    assert all((h["blas_threads"] == 1).all() for h in histories)


def test_halving_on_dask_matches_serial(client, data, tmp_path):
    """The halving search's models travel to the cluster's workers and back, and continue as they would here."""
    from study import halving

    settings_grid = config.make_grid([0.01, 0.05, 0.2], [(20, 8, 3)], [0.0, 1e-3, 1e-2])
    options = {"factor": 3, "min_epochs": 1, "max_epochs": 9, "progress": False, "batch_size": 50, "print_iter": 2,
               "optimizer": "momentum", "dropout": 0.2}
    serial = halving.halving_search(settings_grid, *data, tmp_path / "serial.csv", n_jobs=1, **options)
    with distributed.get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
        on_dask = halving.halving_search(settings_grid, *data, tmp_path / "dask.csv", n_jobs=-1, **options)
    assert sum("train_rung" in task["key"] for task in stream.data) >= 2  # at least one task per rung
    columns = ["rung", *KEY, "epochs", *NUMBERS]
    assert on_dask.groupby("rung").size().tolist() == [9, 3, 1]
    pd.testing.assert_frame_equal(serial[columns].sort_values(["rung", *KEY]).reset_index(drop=True),
                                  on_dask[columns].sort_values(["rung", *KEY]).reset_index(drop=True))
