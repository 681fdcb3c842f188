"""Records that must be trusted before a long job trains on them: a recorded run is never overwritten, weights and
histories that are not their record's are refused, a torn log row is skipped by a read, and every refusal names its
file and what to do."""

import dataclasses
import shutil
import sys
import warnings

import numpy as np
import pytest
from test_frontier import images  # noqa: F401  (a fixture: square images of two classes)
from test_modules import small_problem
from test_records import TINY

from modules import MLP
from study import config, frontier, grid, records, runs


@pytest.fixture
def named():
    """Three runs of a small problem that differ by one setting each: the learning rate, the hidden width, the seed."""
    return {"a": dict(TINY, layers=[2, 16, 3], lr=0.1, L2_lambda=0.0),
            "b": dict(TINY, layers=[2, 8, 3], lr=0.05, L2_lambda=0.0),
            "c": dict(TINY, layers=[2, 16, 3], lr=0.1, L2_lambda=0.0, seed=1)}


def files(root):
    """Every file under ``root`` with its bytes."""
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def recorded(store, named):
    data = small_problem()
    records.fit_or_read(named, data, store, progress=False)
    return data, files(store.log_path.parent.parent)


# -- 1. a recorded run is never overwritten --------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["settings", "data"])
def test_a_name_recorded_with_other_settings_or_data_is_refused_and_nothing_is_written(store, named, tmp_path,
                                                                                      change):
    data, before = recorded(store, named)
    settings = dict(named["a"], lr=0.2) if change == "settings" else named["a"]
    other = data if change == "settings" else (data[0][1:], data[1][1:], *data[2:])
    started = runs.runs_started
    with pytest.raises(records.RecordError, match=r"^a is already recorded in .*models\.csv by a run made with other "
                                                  r"settings or data.*another name or output folder.*fresh=True"):
        records.fit_or_read({"a": settings}, other, store, progress=False)
    with pytest.raises(records.RecordError, match="a is already recorded"):
        store.missing({"a": settings}, other)
    assert runs.runs_started == started  # refused before anything trained
    assert files(tmp_path) == before


def test_fresh_replaces_a_record_and_keeps_its_weights_and_history_as_backups(store, named):
    data, before = recorded(store, named)
    weights, history = store.weights_path("a"), store.history_path("a")
    for generation, suffix in enumerate([".bak", ".bak.1"]):
        old = {path: path.read_bytes() for path in (weights, history)}
        records.fit_or_read({"a": dict(named["a"], lr=0.2 + generation / 10)}, data, store, fresh=True,
                            progress=False)
        for path, content in old.items():
            assert path.with_name(path.name + suffix).read_bytes() == content
    assert store.log_path.with_name("models.csv.bak").read_bytes() == before[store.log_path]
    assert MLP.from_file(weights).lr == pytest.approx(0.3)


def test_a_record_missing_a_file_trains_again_and_keeps_the_file_it_had(store, named):
    data, before = recorded(store, named)
    store.weights_path("a").unlink()
    again = records.fit_or_read({"a": dict(named["a"], lr=0.2)}, data, store, progress=False)["a"]
    assert again.lr == 0.2
    backup = store.history_path("a").with_name("a.csv.bak")
    assert backup.read_bytes() == before[store.history_path("a")]


def test_a_weights_file_left_by_a_run_cut_short_is_kept_aside(store, named):
    data = small_problem()
    store.weights_dir.mkdir(parents=True)
    runs.fit(named["b"], *data).save_param(store.weights_path("a"))  # no row, no history: the run never finished
    left = store.weights_path("a").read_bytes()
    records.fit_or_read({"a": named["a"]}, data, store, progress=False)
    assert store.weights_path("a").with_name("a.npz.bak").read_bytes() == left


def test_the_frontier_job_refuses_another_recipe_on_the_same_output_folder(images, tmp_path, monkeypatch, capsys):  # noqa: F811
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    frontier.train_frontier(cfg, images, progress=False)
    before = files(tmp_path / "weights")
    other = dataclasses.replace(cfg, frontier_recipe=dict(cfg.frontier_recipe, lr=cfg.frontier_recipe["lr"] * 2))
    with pytest.raises(records.RecordError, match=r"already recorded in .*frontier\.csv"):
        frontier.train_frontier(other, images, progress=False)
    with pytest.raises(records.RecordError, match=r"already recorded in .*frontier\.csv"):
        frontier.train_frontier(other, images, train=False)

    monkeypatch.setattr(config, "study_config", lambda quick: other)
    monkeypatch.setattr(frontier.mnist_reader, "load_fashion_mnist", lambda **_: (*images, *images[2:]))
    with pytest.raises(SystemExit) as stopped:
        frontier.main(["--jobs", "1"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "already recorded in" in err and "--fresh" in err and "Traceback" not in err
    assert files(tmp_path / "weights") == before


# -- 2. weights and histories that are not their record's -----------------------------------------------------------


@pytest.mark.parametrize(("source", "differs"), [("b", r"layers \[2, 8, 3\] where the record has \[2, 16, 3\]; "
                                                      r"lr 0.05 where the record has 0.1"),
                                                 ("c", "seed 1 where the record has 0")])
def test_weights_of_another_run_are_refused_naming_the_file_and_the_settings(store, named, source, differs):
    data, _ = recorded(store, named)
    shutil.copy(store.weights_path(source), store.weights_path("a"))
    with pytest.raises(records.RecordError, match=rf"weights/a\.npz holds a model of other settings than the record "
                                                  rf"of a in .*models\.csv \({differs}\).*Restore"):
        records.fit_or_read(named, data, store, progress=False)


def test_a_model_of_other_settings_saved_in_a_record_s_place_is_refused(store, named):
    data, _ = recorded(store, named)
    MLP([2, 16, 3], lr=0.1, L2_lambda=0.0, max_epoch=2, batch_size=50, print_iter=2, dropout=0.5).save_param(
        store.weights_path("a"))
    with pytest.raises(records.RecordError, match=r"weights/a\.npz .*\(dropout 0.5 where the record has 0.0\)"):
        records.fit_or_read({"a": named["a"]}, data, store, progress=False)


def test_a_history_of_another_run_is_refused_naming_the_file(store, named):
    data, _ = recorded(store, named)
    shutil.copy(store.history_path("b"), store.history_path("a"))
    with pytest.raises(records.RecordError, match=r"histories/a\.csv is not the history of the run recorded as "
                                                  r"a in .*models\.csv \(best_val_acc .* where the row has .*\): "
                                                  r"restore it"):
        records.fit_or_read(named, data, store, progress=False)


def test_a_frontier_member_s_weights_copied_over_another_s_are_refused(images, tmp_path):  # noqa: F811
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    _, chosen, _ = frontier.train_frontier(cfg, images, progress=False)
    store = cfg.frontier_records
    shutil.copy(store.weights_path(f"{chosen}_seed1"), store.weights_path(f"{chosen}_seed2"))
    with pytest.raises(records.RecordError, match=rf"{chosen}_seed2\.npz holds a model of other settings .*seed 1 "
                                                  "where the record has 2"):
        frontier.train_frontier(cfg, images, train=False)


# -- 3. a torn last row of a log --------------------------------------------------------------------------------------


def test_a_torn_last_row_is_skipped_by_every_read_and_dropped_only_by_a_run_that_writes(store, named, tmp_path):
    data, _ = recorded(store, named)
    whole = store.log_path.read_bytes()
    store.log_path.write_bytes(whole + b"a,0123456789abcdef,0.9")  # a crash while the row of a rerun was written
    torn = files(tmp_path)
    with warnings.catch_warnings(record=True) as said:  # said once, however many reads skip the torn row
        warnings.simplefilter("always")
        assert sorted(store.read_log()) == ["a", "b", "c"]
        assert store.missing(named, data) == []
        models = records.fit_or_read(named, data, store, progress=False)
    assert [str(w.message) for w in said if "cut short" in str(w.message)] == [
        f"{store.log_path}: its last row was cut short (by a crash while it was written?) and is left out; the next "
        "search that writes this log drops it"]
    assert models["b"].layers == [2, 8, 3]
    assert files(tmp_path) == torn  # a read writes nothing: no repair, no lock file

    started = runs.runs_started
    records.fit_or_read({"d": dict(named["a"], lr=0.3)}, data, store, progress=False)
    assert runs.runs_started == started + 1
    assert store.log_path.read_bytes().startswith(whole) and store.log_path.read_bytes().endswith(b"\n")
    assert sorted(store.read_log()) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("content", [b"", b"name,ke"])
def test_a_log_without_a_whole_header_is_no_log_to_a_read_and_started_anew_by_a_run(store, named, content):
    store.log_path.parent.mkdir(parents=True)
    store.log_path.write_bytes(content)
    assert store.missing(named, small_problem()) == list(named)
    assert store.log_path.read_bytes() == content
    records.fit_or_read(named, small_problem(), store, progress=False)
    assert sorted(store.read_log()) == ["a", "b", "c"]


def test_the_notebook_reads_section_9_past_a_torn_last_row(images, tmp_path):  # noqa: F811
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    _, chosen, members = frontier.train_frontier(cfg, images, progress=False)
    log = cfg.frontier_records.log_path
    log.write_bytes(log.read_bytes() + f"{chosen}_seed1,ce23e08cfb90c61c,0.91".encode())
    torn = log.read_bytes()
    with pytest.warns(UserWarning, match="cut short"):
        again = frontier.train_frontier(cfg, images, train=False)
    assert list(again[2]) == list(members)
    np.testing.assert_array_equal(again[2][chosen].predict(images[2]), members[chosen].predict(images[2]))
    assert log.read_bytes() == torn


# -- 4. histories that are empty or hold only their header -------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"iteration,epoch,lr,train_loss,train_acc,val_loss,val_acc,diverged\n",
                                     b"\x00\xff\xfe garbage", b"iteration,epoch\n1,2\n"])
def test_an_empty_or_unreadable_history_is_refused_naming_the_file(store, named, content):
    data, _ = recorded(store, named)
    store.history_path("a").write_bytes(content)
    with pytest.raises(records.RecordError, match=r"histories/a\.csv is not a readable training history \(.*\): "
                                                  r"restore it \(from git, say\), or delete the row of a from "
                                                  r".*models\.csv"):
        records.fit_or_read(named, data, store, progress=False)


def test_an_empty_frontier_history_is_refused_naming_the_file(images, tmp_path):  # noqa: F811
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    _, chosen, _ = frontier.train_frontier(cfg, images, progress=False)
    cfg.frontier_records.history_path(chosen).write_text("")
    with pytest.raises(records.RecordError, match=rf"frontier_histories/{chosen}\.csv is not a readable training "
                                                  "history"):
        frontier.train_frontier(cfg, images, train=False)


def test_an_empty_grid_history_is_refused_naming_the_file(data, tmp_path):
    settings_grid = config.make_grid([0.1], [(20, 8, 3)], [0.0])
    grid.grid_search(settings_grid, *data, tmp_path / "grid.csv", tmp_path / "histories", progress=False, **TINY)
    path = grid.history_path(tmp_path / "histories", settings_grid[0])
    path.write_text("iteration,epoch,lr,train_loss,train_acc,val_loss,val_acc,diverged\n")
    with pytest.raises(ValueError, match=r"lr0\.1_L2_lambda0\.csv is not a readable training history \(it holds no "
                                         r"rows\): delete it and run the grid search again"):
        grid.read_history(tmp_path / "histories", settings_grid[0])


# -- 7. messages that name their object -----------------------------------------------------------------------------


def test_an_unreachable_scheduler_is_one_sentence_and_status_2(monkeypatch, capsys):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(frontier, "SCHEDULER_TIMEOUT_S", 1)
    with pytest.raises(SystemExit) as stopped:
        frontier.main(["--scheduler", "tcp://127.0.0.1:1"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "could not reach a Dask scheduler at tcp://127.0.0.1:1" in err and "dask scheduler" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_dask_not_installed_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # the import fails, as without dask
    with pytest.raises(SystemExit) as stopped:
        frontier.main(["--scheduler", "tcp://127.0.0.1:8786"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert 'pip install "dask[distributed]"' in err and "Traceback" not in err
