"""study.records: finished runs recorded (weights, history, a keyed row) and read back instead of trained again."""

import numpy as np
import pandas as pd
import pytest
from test_beyond import candidates
from test_modules import small_problem

from study import beyond, config, grid, records, runs

TINY = {"max_epoch": 2, "batch_size": 50, "print_iter": 2, "seed": 0}


@pytest.fixture
def named():
    return dict(zip(["momentum", "adam", "diverges"], candidates(), strict=True))


def same_run(a, b):
    pd.testing.assert_frame_equal(a.history, b.history)
    assert (a.best_val_acc, a.best_val_loss, a.best_iteration, a.epoch, a.diverged) == \
           (b.best_val_acc, b.best_val_loss, b.best_iteration, b.epoch, b.diverged)


def test_runs_are_trained_once_then_read_back_as_they_trained(store, named):
    data = small_problem()
    started = runs.runs_started
    first = records.fit_or_read(named, data, store, progress=False)
    assert runs.runs_started == started + 3
    files = {path: path.read_bytes() for path in store.log_path.parent.parent.rglob("*") if path.is_file()}
    again = records.fit_or_read(named, data, store, progress=False)
    assert runs.runs_started == started + 3  # nothing trained the second time
    assert {path: path.read_bytes() for path in files} == files
    for name in named:
        same_run(again[name], first[name])
        trained = runs.fit(named[name], *data)
        same_run(again[name], trained)
        if not trained.diverged:
            np.testing.assert_array_equal(again[name].predict(data[2]), trained.predict(data[2]))
            assert again[name].train_time_s == first[name].train_time_s > 0
    assert again["diverges"].diverged


def test_a_run_compared_on_validation_alone_is_recorded_and_read_back_without_its_weights(tmp_path, named):
    data = small_problem()
    store = records.Records(tmp_path / "log.csv", tmp_path / "histories", tmp_path / "weights",
                            weightless=frozenset({"adam"}))
    first = records.fit_or_read(named, data, store, progress=False)
    assert not store.weights_path("adam").exists() and store.weights_path("momentum").exists()
    started = runs.runs_started
    again = records.fit_or_read(named, data, store, progress=False)
    assert runs.runs_started == started  # complete without weights: nothing trains again
    same_run(again["adam"], first["adam"])
    with pytest.raises(records.RecordError, match="without its weights"):
        store.read("adam", store.read_log()["adam"])
    store.weights_path("momentum").unlink()  # the others still need theirs
    assert store.pending(records.run_keys(named, data)) == ["momentum"]


def test_only_the_candidate_its_group_chooses_on_validation_keeps_its_weights(tmp_path, named):
    data = small_problem()
    store = records.Records(tmp_path / "log.csv", tmp_path / "histories", tmp_path / "weights",
                            groups=(tuple(named),))
    first = records.fit_or_read(named, data, store, progress=False)
    chosen = beyond.best_on_validation(list(first.values()))
    name = next(name for name, model in first.items() if model is chosen)
    assert [n for n in named if store.weights_path(n).exists()] == [name]
    for other in set(named) - {name}:  # moved aside, not lost
        assert store.weights_path(other).with_name(f"{other}.npz.bak").exists()
    started = runs.runs_started
    again = records.fit_or_read(named, data, store, progress=False)
    assert runs.runs_started == started  # the others are complete with their histories alone
    np.testing.assert_array_equal(again[name].predict(data[2]), first[name].predict(data[2]))
    for other in named:
        same_run(again[other], first[other])
    store.weights_path(name).unlink()  # the chosen one still needs its weights
    assert store.pending(records.run_keys(named, data)) == [name]


def test_validation_probabilities_stand_in_for_the_weights_once_the_job_is_finished(tmp_path, named):
    data = small_problem()
    store = records.Records(tmp_path / "log.csv", tmp_path / "histories", tmp_path / "weights", finished="last")
    first = records.fit_or_read(named, data, store, progress=False)
    key = store.read_log()["adam"]["key"]
    store.write_probabilities("adam", key, {"plain": np.eye(3)})
    store.prune(named)
    assert store.keeps_weights("adam") and store.weights_path("adam").exists()  # the job may still need them
    records.fit_or_read({"last": named["momentum"]}, data, store, progress=False)
    assert not store.keeps_weights("adam") and store.keeps_weights("momentum")  # it has no probabilities recorded
    again = records.fit_or_read(named, data, store, progress=False)  # weights there, though needed no longer: read
    np.testing.assert_array_equal(again["adam"].predict(data[2]), first["adam"].predict(data[2]))
    store.prune(named)
    assert not store.weights_path("adam").exists() and store.weights_path("momentum").exists()
    started = runs.runs_started
    again = records.fit_or_read(named, data, store, progress=False)
    assert runs.runs_started == started  # complete with its probabilities: nothing trains again
    same_run(again["adam"], first["adam"])
    np.testing.assert_array_equal(store.read_probabilities("adam", key)["plain"], np.eye(3))
    assert store.read_probabilities("adam", "another run's key") is None
    store.probabilities_path("adam").unlink()  # neither weights nor probabilities: trained again
    assert store.pending(records.run_keys(named, data)) == ["adam"]
    store.write_probabilities("adam", key, {"plain": np.eye(3)})
    records.fit_or_read(named, data, store, fresh=True, progress=False)  # a new run: the old one's are set aside
    assert store.read_probabilities("adam", key) is None and store.weights_path("adam").exists()
    assert store.probabilities_path("adam").with_name("adam.probabilities.npz.bak").exists()


def test_parallel_runs_are_recorded_as_serial_ones(tmp_path, named):
    data = small_problem()
    serial = records.fit_or_read(named, data, records.Records(tmp_path / "a.csv", tmp_path / "a", tmp_path / "a"),
                                 progress=False)
    parallel = records.fit_or_read(named, data, records.Records(tmp_path / "b.csv", tmp_path / "b", tmp_path / "b"),
                                   n_jobs=2, progress=False)
    for name in named:
        same_run(serial[name], parallel[name])


def test_runs_of_different_data_train_in_one_batch_each_on_its_own(tmp_path, named):
    data = small_problem()
    fewer = (data[0][:-10], data[1][:-10], data[2], data[3])
    by_name = {"momentum": data, "adam": fewer}
    both = {name: named[name] for name in by_name}
    store = records.Records(tmp_path / "log.csv", tmp_path / "runs", tmp_path / "runs")
    batch = records.fit_or_read(both, by_name, store, n_jobs=2, progress=False)
    same_run(batch["momentum"], runs.fit(named["momentum"], *data))
    same_run(batch["adam"], runs.fit(named["adam"], *fewer))
    assert store.missing(both, by_name) == []
    with pytest.raises(records.RecordError, match="adam is already recorded"):
        store.missing(both, data)  # adam's record is of the fewer rows


def test_a_record_with_a_missing_file_trains_that_run_alone(store, named):
    data = small_problem()
    records.fit_or_read(named, data, store, progress=False)
    store.history_path("adam").unlink()
    started = runs.runs_started
    again = records.fit_or_read(named, data, store, progress=False)
    assert runs.runs_started == started + 1
    assert store.history_path("adam").exists()
    same_run(again["adam"], runs.fit(named["adam"], *data))


def test_other_settings_or_other_data_are_trained_under_another_name_not_read(store, named):
    data = small_problem()
    records.fit_or_read(named, data, store, progress=False)
    started = runs.runs_started
    records.fit_or_read({"adam_lr0.02": dict(named["adam"], lr=0.02)}, data, store, progress=False)
    X_train, y_train, X_val, y_val = data
    records.fit_or_read({"adam_fewer": named["adam"]}, (X_train[1:], y_train[1:], X_val, y_val), store,
                        progress=False)
    assert runs.runs_started == started + 2
    assert sorted(store.read_log()) == ["adam", "adam_fewer", "adam_lr0.02", "diverges", "momentum"]


def test_fresh_trains_its_runs_again_and_keeps_the_other_records_of_the_log(store, named):
    data = small_problem()
    records.fit_or_read(named, data, store, progress=False)
    old = store.log_path.read_bytes()
    started = runs.runs_started
    records.fit_or_read({"adam": named["adam"]}, data, store, fresh=True, progress=False)
    assert runs.runs_started == started + 1
    assert store.log_path.with_name("models.csv.bak").read_bytes() == old
    assert sorted(store.read_log()) == ["adam", "diverges", "momentum"]  # one row each: the others untouched
    assert len(store.log_path.read_text().splitlines()) == 4
    again = records.fit_or_read(named, data, store, progress=False)  # and all three are read, not trained
    assert runs.runs_started == started + 1 and set(again) == set(named)


def test_a_run_given_its_own_fit_trains_here_and_is_counted(store, named):
    data = small_problem()
    calls = []

    def fit(settings, *data):
        calls.append(settings)
        return runs.fit(settings, *data)

    started = runs.runs_started
    (model,) = records.fit_or_read({"adam": named["adam"]}, data, store, fit=fit, progress=False).values()
    assert calls == [named["adam"]] and runs.runs_started == started + 1
    same_run(model, runs.fit(named["adam"], *data))


def test_the_record_of_the_grid_s_best_run_is_the_grid_s_run_bit_for_bit(data, store):
    """The notebook's final model: the best setting of a grid trained on two processes, trained again and recorded."""
    settings_grid = config.make_grid([0.05, 0.2], [(20, 8, 3)], [0.0])
    log = grid.grid_search(settings_grid, *data, store.log_path.with_name("grid.csv"), store.history_dir / "grid",
                           n_jobs=2, progress=False, **TINY)
    best = grid.best_settings(log)
    final = records.fit_or_read({"best_model": dict(best, **TINY)}, data[:4], store, progress=False)["best_model"]
    pd.testing.assert_frame_equal(final.history, grid.read_history(store.history_dir / "grid", best))
    row = runs.find_row(log, best)
    assert (final.best_val_acc, final.best_iteration) == (row["best_val_acc"], row["best_iteration"])
