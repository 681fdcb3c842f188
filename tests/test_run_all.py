"""Run All, as the notebook's reader runs it (study.runall): on a fresh clone with the committed logs, records and
weights, the committed notebook trains nothing, changes no tracked file and prints the committed numbers."""

import nbformat
import pytest

from study import runall


def cell(*texts):
    code = nbformat.v4.new_code_cell("...")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in texts]
    return code


def test_what_differs_between_executions_is_masked_and_a_moved_number_is_not():
    trained = cell("== 3. Hyperparameter tuning\n", "grid search: 100%|##########| 48/48 [07:02<00:00, 8.8s/run]\n",
                   "48 runs in the log, 48 trained now on 2 processes: wall time 7.0 min (the runs' own training "
                   "times add up to 2.1 h); 0 diverged\n== 3. Hyperparameter tuning: 7.1 min\n")
    read = cell("== 3. Hyperparameter tuning\n", "48 runs in the log, 0 trained now on 2 processes: wall time 0.2 s "
                "(the runs' own training times add up to 2.1 h); 0 diverged\n== 3. Hyperparameter tuning: 1 s\n")
    moved = cell("== 3. Hyperparameter tuning\n", "47 runs in the log, 0 trained now on 2 processes: wall time 0.2 s "
                 "(the runs' own training times add up to 2.1 h); 0 diverged\n")
    assert runall.printed(trained) == runall.printed(read)
    assert runall.printed(cell("these outputs: full study, FRESH = True (every part trained again, as `make run` "
                               "passes it), 2 processes; data in data/fashion\n")) == \
        runall.printed(cell("these outputs: full study, FRESH = False (recorded runs read, the missing trained), "
                            "2 processes; data in data/fashion\n"))
    committed, executed = nbformat.v4.new_notebook(cells=[trained]), nbformat.v4.new_notebook(cells=[moved])
    assert list(runall.differing_cells(committed, executed)) == [0]


def test_a_gradient_checks_rounding_noise_is_compared_as_such_and_a_wrong_gradient_is_not():
    def check(error):
        return runall.printed(cell(f"W1  (784, 8): largest relative error {error}\n"))

    assert check("8.0e-11") == check("9.1e-11")  # the same check on two processors' BLAS kernels
    assert check("3.0e-02") != check("4.0e-02") and check("3.0e-02") != check("8.0e-11")


def test_the_number_of_runs_trained_is_read_from_the_last_line():
    last = cell("this execution trained 0 runs; log/results.json unchanged\n")
    nb = nbformat.v4.new_notebook(cells=[cell("a\n"), last])
    assert runall.runs_trained(nb) == 0
    assert runall.runs_trained(nbformat.v4.new_notebook(cells=[cell("a\n")])) is None


def test_the_exercise_snippets_are_read_from_the_try_it_yourself_cell_unindented():
    text = (f"{runall.EXERCISES_ANCHOR}\n## Try it yourself\n\n1. Print it:\n   ```python\n   for i in range(2):\n"
            "       print(i)\n   ```\n2. Not code: `x = 1`.\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("```python\nignored = 1\n```"),
                                         nbformat.v4.new_markdown_cell(text)])
    assert runall.exercises(nb) == ["for i in range(2):\n    print(i)"]


def test_the_snippets_run_after_the_notebook_in_its_kernel_and_a_failing_one_is_named(tmp_path):
    exercises = (f"{runall.EXERCISES_ANCHOR}\n1. Add one:\n   ```python\n   print(x + 1)\n   ```\n"
                 "2. An ensemble:\n   ```python\n   Ensemble([])\n   ```\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell(exercises)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nbformat.write(nb, tmp_path / "n.ipynb")
    executed, wall_s, failed = runall.execute(tmp_path, "n.ipynb", timeout=60)
    assert len(executed.cells) == 2 and wall_s > 0  # the snippets' cells are not kept
    assert failed == {"Ensemble([])": "NameError: name 'Ensemble' is not defined"}


def test_the_record_sums_both_notebooks_and_keeps_each():
    found = {"notebooks": {"a.ipynb": {"wall_time_s": 50.04, "runs_trained": 0, "differing_cells": {},
                                       "failed_exercises": {}},
                           "b.ipynb": {"wall_time_s": 60.0, "runs_trained": 0, "differing_cells": {3: ([], [])},
                                       "failed_exercises": {"x": "NameError: name 'Ensemble' is not defined"}}},
             "changed_files": []}
    kept = runall.record(found)
    assert kept["wall_time_s"] == 110.0 and kept["runs_trained"] == 0
    assert (kept["differing_cells"], kept["failed_exercises"], kept["changed_files"]) == (1, 1, 0)
    assert kept["notebooks"]["a.ipynb"] == {"wall_time_s": 50.0, "runs_trained": 0, "differing_cells": 0,
                                            "failed_exercises": 0}
    found["notebooks"]["a.ipynb"]["runs_trained"] = None  # a notebook that does not say: no total
    assert runall.record(found)["runs_trained"] is None


@pytest.mark.real_data
@pytest.mark.slow
def test_run_all_on_a_fresh_clone_reads_everything_and_changes_nothing(fashion_mnist, tmp_path):
    found = runall.check(workdir=tmp_path, cell_timeout=300)  # a cell that trains takes longer: it fails, soon
    assert list(found["notebooks"]) == list(runall.NOTEBOOKS)
    for name, each in found["notebooks"].items():
        print(f"Run All of {name} on a fresh clone: {each['wall_time_s']:.0f} s")
        assert each["runs_trained"] == 0, name
        assert each["differing_cells"] == {}, name
        assert each["failed_exercises"] == {}, name
    assert found["changed_files"] == []
