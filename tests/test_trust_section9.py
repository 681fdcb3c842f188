"""Section 9's records stand on their own, and every file of them is checked at its door (issue 35, kinds 1 to 6):
a miniature job trained once, copied into each test's folder, one file damaged, the answer and the files checked."""

import re
import shutil
import warnings

import numpy as np
import pytest
from test_modules import small_problem
from test_records import TINY
from test_trust_records import files

from study import config, finals, frontier, records, runs
from study.ensemble import Ensemble


def fake_data():
    rng = np.random.default_rng(0)
    return [rng.random((n, 784)).astype(np.float32) if i % 2 == 0 else rng.integers(0, 10, n)
            for i, n in enumerate((300, 300, 100, 100, 50, 50))]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder holding the whole miniature job (``make frontier --quick``), trained once for this module."""
    folder = tmp_path_factory.mktemp("job")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config.tempfile, "mkdtemp", lambda prefix="": str(folder))
        patch.setattr(frontier.mnist_reader, "load_fashion_mnist", lambda **kwargs: tuple(fake_data()))
        frontier.main(["--quick", "--jobs", "1"])
    return folder


@pytest.fixture
def job(finished, tmp_path, monkeypatch):
    """A copy of the finished job for one test to damage: ``(cfg, data)``, ``main`` running on the copy."""
    for part in ("log", "weights"):
        shutil.copytree(finished / part, tmp_path / part)
    monkeypatch.setattr(config.tempfile, "mkdtemp", lambda prefix="": str(tmp_path))
    monkeypatch.setattr(frontier.mnist_reader, "load_fashion_mnist", lambda **kwargs: tuple(fake_data()))
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    return cfg, config.subsample(tuple(fake_data()), cfg)[:4]


def candidates_of(cfg):
    return [*cfg.frontier_candidate_settings(), *cfg.frontier_candidate_settings(cfg.frontier_round_two)]


def pruned(cfg):
    """The candidates recorded with their validation probabilities instead of their weights."""
    store = cfg.frontier_records
    return [name for name in candidates_of(cfg) if not store.weights_path(name).exists()]


def without_row(log, name):
    lines = log.read_bytes().splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(f"{name},".encode()))


# -- 1. each record stands on its own -----------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "torn"])
def test_losing_the_final_student_s_row_costs_that_run_alone(job, damage, capsys):
    cfg, data = job
    store, log = cfg.frontier_records, cfg.frontier_records.log_path
    row = next(line for line in log.read_bytes().splitlines(keepends=True) if line.startswith(b"distilled_all,"))
    kept = without_row(log, "distilled_all")
    log.write_bytes(kept + (row[:25] if damage == "torn" else b""))  # torn: a crash while the row was written
    assert len(pruned(cfg)) >= 2
    probabilities = {path: path.read_bytes() for path in map(store.probabilities_path, pruned(cfg))}

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        table, sentence = frontier.status(cfg, data)
        assert store.missing({name: settings for name, settings in {
            **cfg.frontier_candidate_settings(), **cfg.frontier_candidate_settings(cfg.frontier_round_two)}.items()},
            data) == []
    assert table.loc[table["state"] != "done", "run"].tolist() == [finals.STUDENT]
    assert sentence.startswith(f"{len(table) - 1} of {len(table)} runs done")
    assert sum("cut short" in str(w.message) for w in said) == (damage == "torn")  # said once, when torn

    started = runs.runs_started
    frontier.main(["--quick", "--jobs", "1"])
    assert runs.runs_started == started + 1  # the final student alone trains again
    assert {path: path.read_bytes() for path in probabilities} == probabilities  # the candidates stay recorded
    assert pruned(cfg) == list(map(lambda p: p.name.removesuffix(".probabilities.npz"), probabilities))
    assert log.read_bytes().startswith(kept) and b"\ndistilled_all," in log.read_bytes()
    table, _ = frontier.status(cfg, data)
    assert (table["state"] == "done").all()


def test_a_pruned_candidate_is_complete_without_its_weights_and_the_final_student_s_row(job):
    cfg, data = job
    store = cfg.frontier_records
    name = pruned(cfg)[0]
    row = store.read_log()[name]
    store.forget({finals.STUDENT})
    assert store.complete(row) and store.stands_without_weights(row)
    store.probabilities_path(name).unlink()  # neither weights nor probabilities: that run alone is to do
    table, _ = frontier.status(cfg, data)
    assert table.loc[table["state"] != "done", "run"].tolist()[:1] == [name]


# -- 2. probabilities files are checked -----------------------------------------------------------------------------


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda p: p[:, :9], r"has shape \(100, 9\), expected \(100, 10\)"),
    (lambda p: p[1:], r"has shape \(99, 10\), expected \(100, 10\)"),
    (lambda p: p[:, 0], r"has shape \(100,\)"),
    (lambda p: np.where(np.arange(len(p))[:, None] < 3, np.nan, p), "not finite numbers"),
    (lambda p: p * 100, "not probabilities"),
    (lambda p: -p, "not probabilities"),
    (None, "lacks the view 'flip_average'"),
])
def test_a_damaged_probabilities_file_is_refused_naming_it_and_nothing_trains(job, damage, problem, capsys):
    cfg, _ = job
    store = cfg.frontier_records
    name = pruned(cfg)[0]
    path = store.probabilities_path(name)
    arrays = dict(np.load(path))
    if damage is None:
        del arrays["flip_average"]
    else:
        arrays["plain"] = damage(arrays["plain"])
    np.savez_compressed(path, **arrays)
    before, started = files(cfg.output_dir), runs.runs_started
    with pytest.raises(SystemExit):
        frontier.main(["--quick", "--jobs", "1"])
    err = capsys.readouterr().err
    assert str(path) in err and "restore it" in err and "Traceback" not in err
    assert re.search(problem, err)
    assert runs.runs_started == started and files(cfg.output_dir) == before


def test_an_unreadable_probabilities_file_is_refused_naming_it(job, capsys):
    cfg, data = job
    path = cfg.frontier_records.probabilities_path(pruned(cfg)[0])
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(records.RecordError, match=rf"{path} is not a readable record of validation probabilities"):
        frontier.status(cfg, data)


# -- 3. hand-edited logs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda cells: [cells[0], cells[1], "abc", *cells[3:]], r"row 3 \((\w+)\): best_val_acc 'abc' is not a number"),
    (lambda cells: [*cells, "extra"], r"row 3 \((\w+)\) has 8 cells where the header has 7"),
])
def test_a_hand_edited_log_row_is_refused_naming_the_file_and_the_row(job, edit, problem, capsys):
    cfg, data = job
    log = cfg.frontier_records.log_path
    lines = log.read_text().splitlines()
    lines[2] = ",".join(edit(lines[2].split(",")))
    log.write_text("\n".join(lines) + "\n")
    before = files(cfg.output_dir)
    with pytest.raises(records.RecordError, match=rf"{log} cannot be read \({problem}\): correct that row"):
        frontier.status(cfg, data)
    with pytest.raises(SystemExit):
        frontier.main(["--quick", "--jobs", "1"])
    err = capsys.readouterr().err
    assert f"{log} cannot be read" in err and "Traceback" not in err
    assert files(cfg.output_dir) == before


# -- 4. two writers -------------------------------------------------------------------------------------------------


def test_probabilities_are_written_under_the_log_s_lock(job):
    cfg, data = job
    store = cfg.frontier_records
    name = pruned(cfg)[0]
    store.probabilities_path(name).unlink()  # to be computed again from its weights, restored from their backup
    shutil.copy(store.weights_path(name).with_name(f"{name}.npz.bak"), store.weights_path(name))
    candidates = store.read_all({name: cfg.frontier_candidate_settings({**cfg.frontier_candidates,
                                                                        **cfg.frontier_round_two})[name]})
    with runs.exclusive(store.log_path), pytest.raises(runs.LogInUse, match="another search is writing"):
        finals.candidate_probabilities(store, candidates, data[2])
    assert not store.probabilities_path(name).exists()
    finals.candidate_probabilities(store, candidates, data[2])
    assert store.probabilities_path(name).exists()


# -- 5. run names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a,b", "../x", ".hidden", "a/b", ""])
def test_a_name_no_record_can_have_is_refused_before_anything_is_written(tmp_path, name):
    store = records.Records(tmp_path / "log" / "runs.csv", tmp_path / "log" / "histories", tmp_path / "weights")
    with pytest.raises(ValueError, match=rf"^{re.escape(repr(name))} cannot name a recorded run"):
        records.fit_or_read({name: dict(TINY, layers=[2, 8, 3])}, small_problem(), store, fresh=True, progress=False)
    assert files(tmp_path) == {}
    assert not (tmp_path.parent / "x.csv").exists()


# -- 6. distillation's doors ----------------------------------------------------------------------------------------


def test_an_unknown_candidate_is_refused_naming_it(job):
    cfg, data = job
    store = cfg.frontier_records
    some = store.read_all({name: settings for name, settings in cfg.frontier_candidate_settings().items()})
    unknown = {"no_such_candidate": next(iter(some.values()))}
    with pytest.raises(records.RecordError, match=r"the candidates \['no_such_candidate'\] have no row in"):
        finals.candidate_probabilities(store, unknown, data[2])
    with pytest.raises(ValueError, match="the chosen candidate 'no_such_candidate' is not among the candidates"):
        finals.train_finals(cfg, data, some, "no_such_candidate", fit=None)


@pytest.mark.parametrize(("temperature", "weight", "setting"), [
    (-1.0, 0.5, "temperature"), (0.0, 0.5, "temperature"), (float("nan"), 0.5, "temperature"),
    (1.0, 1.5, "weight"), (1.0, -0.1, "weight")])
def test_distillation_s_settings_are_refused_by_name(temperature, weight, setting):
    teacher = Ensemble([runs.new_model({"layers": [784, 8, 10], "seed": 0})])
    X, y = np.zeros((4, 784), np.float32), np.arange(4)
    with pytest.raises(ValueError, match=rf"^distillation's {setting} must be .*cfg\.distill_{setting}"):
        finals.Taught((X, y, X, y), teacher, ("k",), temperature, weight)
    with pytest.raises(ValueError, match=rf"^distillation's {setting}"):
        finals.soft_targets(np.full((4, 10), 0.1), y, temperature, weight)


def test_a_teacher_of_other_classes_or_other_scaling_is_refused():
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 784), dtype=np.float32), rng.integers(0, 10, 40)
    small = runs.new_model({"layers": [784, 8, 3], "seed": 0, "max_epoch": 1, "print_log": False})
    with pytest.raises(ValueError, match=r"the teacher's probabilities have shape \(40, 3\), which does not fit 40 "
                                         r"labels of classes up to \d"):
        finals.Taught((X, y, X, y), Ensemble([small]), ("k",), 2.0, 0.5).arrays()
    scaled = runs.new_model({"layers": [784, 8, 10], "seed": 0, "max_epoch": 1, "batch_size": 20})
    scaled.train(X * 255, y, X * 255, y)
    assert scaled.data_range[1] > 200
    with pytest.raises(ValueError, match=r"the teacher's member 1 was trained on data in \[0\.0\d+, 25\d\.?\d*\], "
                                         r"the student's images span \[.+, 0\.99\d*\]: distil from members trained "
                                         "on images scaled as the student's"):
        finals.Taught((X, y, X, y), Ensemble([scaled]), ("k",), 2.0, 0.5).arrays()
