"""Files the study reads back, and the commands around them, checked at their doors (issue 35, kinds 4 and 7 to 10):
two writers of one file, log/results.json edited, archives and checkpoints with edited metadata, a piece of a run
that ends before its first validation check, and a port asked for that is taken."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_modules import small_problem
from test_report import _complete_results, _report_fails, project  # noqa: F401  (project is a fixture)

from fileio import atomic_write
from modules import MLP
from study import lab, report

COMMITTED_RESULTS = Path(__file__).resolve().parent.parent / "log" / "results.json"

# -- 4. two writers of one file ---------------------------------------------------------------------------------------


def test_a_live_writer_s_temporary_file_is_left_alone_and_a_dead_one_s_is_removed(tmp_path):
    path = tmp_path / "record.csv"

    def slow_first_writer(f):  # a second writer of the same file starts and finishes while this one writes
        f.write(b"first")
        atomic_write(path, lambda g: g.write(b"second"))

    atomic_write(path, slow_first_writer)  # was FileNotFoundError: the second writer deleted the first's file
    assert path.read_bytes() == b"first"  # the last rename wins
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = [tmp_path / f".record.csv.{dead.stdout.strip()}-abc.tmp", tmp_path / ".record.csv.old.tmp"]
    live = tmp_path / f".record.csv.{os.getppid()}-xyz.tmp"
    for stale in [*left, live]:
        stale.write_bytes(b"half")
    atomic_write(path, lambda f: f.write(b"third"))
    assert path.read_bytes() == b"third"
    assert not any(stale.exists() for stale in left) and live.read_bytes() == b"half"


# -- 7. log/results.json edited ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "problem"), [
    (lambda r: r["test"].update(accuracy=float("nan")), "test.accuracy should be a number, not NaN"),
    (lambda r: r["test"].update(loss=float("inf")), "test.loss should be a number, not Infinity"),
    (lambda r: r["test"].update(accuracy=1.7), r"test.accuracy should be a fraction in \[0, 1\], not 1.7"),
    (lambda r: r["test"].update(accuracy=0.5), r"test holds an accuracy of 0.5 outside its own interval"),
    (lambda r: r["seeds"].update(table=[]), r"seeds.table should hold at least one item, not \[\]"),
])
def test_edited_results_are_refused_before_the_readme_is_touched(project, capsys, change, problem):  # noqa: F811
    results = _complete_results(project)
    assert report.main(["--root", str(project)]) == 0
    change(results)
    (project / "log" / "results.json").write_text(json.dumps(results))
    err = _report_fails(project, capsys, str(project / "log" / "results.json"), "make run")
    assert re.search(problem, err), err


@pytest.mark.parametrize(("change", "problem"), [
    (lambda r: r["frontier"].update(ensemble_choices=[]), "frontier.ensemble_choices should hold at least one"),
    (lambda r: [row.update(chosen=False) for row in r["frontier"]["ensemble_choices"]],
     "frontier.ensemble_choices should mark exactly one choice as chosen"),
    (lambda r: r["finals"].update(member_steps=[s for s in r["finals"]["member_steps"]
                                                if s["flip_average"] != r["finals"]["flip_average"]]),
     "finals.member_steps holds no step with flip_average"),
    (lambda r: r["finals"]["test"][0].update(test_acc=1.7), r"finals.test\[0\].test_acc should be a fraction"),
    (lambda r: r["frontier"]["summary"]["single"].update(test_acc=0.2),
     "frontier.summary.single holds an accuracy of 0.2 outside its own interval"),
])
def test_the_committed_results_edited_are_refused_naming_the_place(tmp_path, change, problem):
    path = tmp_path / "results.json"
    results = json.loads(COMMITTED_RESULTS.read_text())
    assert report.read_results(COMMITTED_RESULTS) == results  # the committed file passes every check
    change(results)
    path.write_text(json.dumps(results))
    with pytest.raises(report.ReportError, match=rf"{path} is not a results file this report can read \(.*{problem}"):
        report.read_results(path)


# -- 8. archives and checkpoints with edited metadata ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archives")
    model = MLP([2, 8, 3], max_epoch=1, batch_size=50, print_iter=2, print_log=False)
    model.train(*small_problem(), checkpoint_path=folder / "run.npz")
    model.save_param(folder / "model.npz")
    return folder


def edited(source, target, **arrays):
    kept = dict(np.load(source))
    kept.update(arrays)
    np.savez(target, **{name: value for name, value in kept.items() if value is not None})
    return target


@pytest.mark.parametrize(("archive", "field", "value", "problem"), [
    ("model.npz", "config", "{not json", "its config is not JSON"),
    ("model.npz", "config", "[1, 2]", "its config is a JSON list, not an object"),
    ("model.npz", "data_range", np.array([0.0, 0.5, 1.0]), r"its data_range must be two finite numbers .*\[0.0, 0.5"),
    ("model.npz", "data_range", np.array(["a", "b"]), "its data_range must be two finite numbers"),
    ("model.npz", "data_range", np.array([0.0, np.nan]), r"its data_range must be two finite numbers .*nan"),
    ("run.npz", "config", "7", "its config is a JSON int, not an object"),
    ("run.npz", "run", "{not json", "its run is not JSON"),
    ("run.npz", "data_range", np.array([np.nan, 1.0]), "its data_range must be two finite numbers"),
])
def test_edited_metadata_in_an_archive_is_refused_naming_the_file(trained, tmp_path, archive, field, value, problem):
    path = edited(trained / archive, tmp_path / archive, **{field: np.array(value)})
    before = path.read_bytes()
    read = MLP.from_file if archive == "model.npz" else MLP.from_checkpoint
    with pytest.raises(ValueError, match=rf"{path} is not a readable .*{problem}.*restore the file"):
        read(path, print_log=False)
    assert path.read_bytes() == before


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda run: run.pop("rows"), "the field 'rows' of its run record lacks it"),
    (lambda run: run.update(epoch="one"), "the field 'epoch' of its run record holds 'one'"),
    (lambda run: run.update(diverged=0), "the field 'diverged' of its run record holds 0"),
])
def test_a_checkpoint_s_edited_run_record_is_refused_naming_the_file_and_the_field(trained, tmp_path, edit,
                                                                                    problem):
    run = json.loads(str(np.load(trained / "run.npz")["run"]))
    edit(run)
    path = edited(trained / "run.npz", tmp_path / "run.npz", run=np.array(json.dumps(run)))
    with pytest.raises(ValueError, match=rf"{path} is not a readable training checkpoint: {problem}; delete the "
                                         "checkpoint to start the run anew"):
        MLP.from_checkpoint(path, print_log=False)
    shutil.copy(trained / "run.npz", path)
    assert MLP.from_checkpoint(path, print_log=False).epoch == 1  # the checkpoint as written is read


# -- 9. a piece of a run shorter than print_iter batches -------------------------------------------------------------


def test_a_piece_of_a_run_that_ends_before_its_first_check_says_so():
    model = MLP([2, 8, 3], max_epoch=3, batch_size=50, print_iter=100, print_log=False)
    with pytest.warns(UserWarning, match=r"training stopped after 3 batches, before the run's first validation check "
                                         r"\(every print_iter=100 batches.*best_val_acc is NaN"):
        history = model.train(*small_problem(), epochs=1)
    assert history.empty and np.isnan(model.best_val_acc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.train(*small_problem())  # the run's last batch is checked: a history, no warning
    assert len(history) == 1 and 0 <= model.best_val_acc <= 1


# -- 10. make notebook PORT=n, n taken --------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [["--port={port}"], ["--port", "{port}", "--no-browser"],
                                     ["--ServerApp.port={port}"]])
def test_a_port_asked_for_that_is_taken_is_refused_with_a_sentence(monkeypatch, options):
    monkeypatch.setattr(lab, "ensure_kernelspec", lambda: pytest.fail("started although the port is taken"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=rf"^study.lab: port {port} is taken .* ask for another port \(make "
                                             rf"notebook PORT={port + 1}\)"):
            lab.main([option.format(port=port) for option in options])


def test_a_port_asked_for_is_that_port_or_none():
    assert lab.requested_port(["--no-browser"]) is None
    assert lab.requested_port(["--port=8890", "--port", "8891"]) == 8891
    with pytest.raises(SystemExit, match="--port must be a port number, got 'x'"):
        lab.requested_port(["--port=x"])
