"""study.prose: every number in the notebook's observations is found in its outputs or in log/results.json."""

import json
import re
from pathlib import Path

import nbformat
import pytest

from study import prose

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def committed():
    return (nbformat.read(REPO / "Fashion_mnist_model.ipynb", as_version=4),
            json.loads((REPO / "log" / "results.json").read_text()))


def test_every_number_of_the_committed_observations_comes_from_the_run(committed):
    nb, results = committed
    assert len(prose.observation_cells(nb)) >= 8
    assert prose.unchecked_numbers(nb, results) == []


def test_a_number_changed_in_an_observation_is_caught(committed):
    nb, results = committed
    code = [cell for cell in nb.cells if cell.cell_type == "code"]

    def printed_somewhere(token):
        probe = nbformat.v4.new_notebook(cells=[*code, nbformat.v4.new_markdown_cell(f"**Observation.** {token}")])
        return not prose.unchecked_numbers(probe, results)

    def moved(token):
        return token[:-1] + str((int(token[-1]) + 5) % 10)  # a smaller move of the last digit could round back

    measured = [(index, match.group()) for index, source in prose.observation_cells(nb)
                for match in prose.NUMBER.finditer(source)
                if "." in match.group() and len(match.group().split(".")[1]) >= 3]
    # The first measured number whose moved value the run printed nowhere: the sentence would then be wrong.
    index, token = next((index, token) for index, token in measured if not printed_somewhere(moved(token)))
    nb.cells[index].source = nb.cells[index].source.replace(token, moved(token), 1)
    missing = prose.unchecked_numbers(nb, results)
    assert [(i, t) for i, t, _ in missing] == [(index, moved(token))]


@pytest.mark.parametrize("token, printed, values, expected", [
    ("0.9045", {"0.9045"}, [], True),
    ("0.9045", set(), [0.90449], True),  # rounds to what is written
    ("0.9045", set(), [0.9041], False),
    ("0.23", set(), [0.0023], True),  # points of accuracy: 100 times the value
    ("65 %", set(), [0.6512], True),
    ("10,000", {"10000"}, [], True),
    ("21,300", set(), [21300.0], True),
    ("0.8932", set(), [], True),  # a constant from elsewhere, listed in prose.CONSTANTS
    ("1.4e-7", set(), [], False),
    ("1.4e-7", set(), [1.43e-7], True),
    ("8e-16", set(), [8.4e-15], False),
])
def test_found_at_the_precision_written(token, printed, values, expected):
    assert prose.found(token, printed, values) is expected


def test_small_whole_numbers_are_not_looked_up():
    assert not prose.checked("8") and not prose.checked("40")
    assert prose.checked("40 %") and prose.checked("0.9") and prose.checked("1,065")


def test_the_command_reports_and_fails(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("**Observation.** Accuracy 0.9123.")])
    nbformat.write(nb, tmp_path / "nb.ipynb")
    (tmp_path / "results.json").write_text(json.dumps({"test": {"accuracy": 0.91}}))
    # No recipe in its log folder says which kernels recorded the quoted numbers: they must repeat, as on the same.
    assert prose.main([str(tmp_path / "nb.ipynb"), "--results", str(tmp_path / "results.json"),
                       "--log-dir", str(tmp_path)]) == 1
    assert re.search(r"cell 0: 0\.9123 is in no output", capsys.readouterr().out)


def test_a_summary_is_checked_as_an_observation_is():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("**Summary.** Accuracy 0.9123.")])
    assert [index for index, _ in prose.observation_cells(nb)] == [0]


# -- numbers that move on other BLAS kernels ------------------------------------------------------------------------

HASWELL = [{"internal_api": "openblas", "version": "0.3.31.188.0", "architecture": "Haswell"}]
SKYLAKEX = [{"internal_api": "openblas", "version": "0.3.31.188.0", "architecture": "SkylakeX"}]
RECORDED_ROW = "784-64-32-10,0.1,0.001,0.8913333333333333\n"
# The same run on other kernels: two more validation images of 6,000 right, the last digits of the log moved.
PERTURBED_ROW = "784-64-32-10,0.1,0.001,0.8916666666666667\n"


def tiny_study(folder, row):
    """A study in miniature, as `make run` leaves it before study.prose: a log of one run whose recipe says it was
    recorded on Haswell's kernels, and a notebook whose code cell prints the log's accuracy (executed with papermill,
    as `make run` does) and whose observation quotes the recorded one. Returns the executed notebook's path."""
    import papermill

    log = folder / "log"
    log.mkdir(parents=True)
    (log / "grid_search.csv").write_text("layers,lr,L2_lambda,best_val_acc\n" + row)
    (log / "grid_search.recipe.json").write_text(json.dumps({"recipe": {}, "data": [], "blas": HASWELL}))
    (folder / "results.json").write_text(json.dumps({"quick": False}))
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A tiny study"),
        nbformat.v4.new_markdown_cell("## 3. Hyperparameter tuning"),
        nbformat.v4.new_code_cell("import pandas as pd\n"
                                  "print(f\"best: {pd.read_csv('log/grid_search.csv')['best_val_acc'].max():.4f}\")"),
        nbformat.v4.new_markdown_cell("**Observation.** The best run reaches 0.8913 on validation, and 12.5 % of the "
                                      "grid's runs come within a point of it."),
    ])
    nb.cells[2].source += "\nprint('within a point: 0.125')"  # a number that other kernels left as it was
    nbformat.write(nb, folder / "study.ipynb")
    papermill.execute_notebook(folder / "study.ipynb", folder / "study.ipynb", cwd=str(folder), kernel_name="python3",
                               progress_bar=False, log_output=False)
    return folder / "study.ipynb"


def prose_command(folder, here):
    return prose.main([str(folder / "study.ipynb"), "--results", str(folder / "results.json"),
                       "--log-dir", str(folder / "log")], here=here)


def tagged(nb):
    return [cell.source for cell in nb.cells if prose.REPORT_TAG in cell.metadata.get("tags", [])]


@pytest.mark.slow
def test_a_study_perturbed_by_other_kernels_ends_well_and_says_what_moved(tmp_path, capsys):
    path = tiny_study(tmp_path, PERTURBED_ROW)
    assert "best: 0.8917" in prose.output_text(nbformat.read(path, as_version=4))
    assert prose_command(tmp_path, SKYLAKEX) == 0
    nb = nbformat.read(path, as_version=4)
    banner, appendix = tagged(nb)
    assert nb.cells[1].source == banner and nb.cells[-1].source == appendix  # under the title, and at the end
    assert "recorded on OpenBLAS 0.3.31.188.0 (Haswell kernels)" in banner
    assert "this run computed on OpenBLAS 0.3.31.188.0 (SkylakeX kernels)" in banner
    assert "1 of the 2 numbers the text quotes moved" in banner
    rows = appendix.split("|---|---|---|\n")[1].splitlines()
    assert rows == ["| 3. Hyperparameter tuning | 0.8913 | **Observation.** The best run reaches 0.8913 on validation, "
                    "and 12.5 % of the grid's runs come within a point of it. |"]
    assert "1 of 2 quoted numbers moved" in capsys.readouterr().out
    assert prose_command(tmp_path, SKYLAKEX) == 0  # checked again: the report is replaced, not added to
    assert tagged(nbformat.read(path, as_version=4)) == [banner, appendix]


@pytest.mark.slow
def test_the_same_perturbation_on_the_recorded_kernels_is_refused(tmp_path, capsys):
    path = tiny_study(tmp_path, PERTURBED_ROW)
    assert prose_command(tmp_path, HASWELL) == 1
    assert "the code changed what it computes" in capsys.readouterr().out
    assert tagged(nbformat.read(path, as_version=4)) == []


def written_study(folder, printed):
    """A notebook whose code cell printed ``printed`` (no kernel: its output written in), its log and results."""
    (folder / "log").mkdir()
    (folder / "log" / "grid_search.recipe.json").write_text(json.dumps({"recipe": {}, "data": [], "blas": HASWELL}))
    (folder / "results.json").write_text("{}")
    code = nbformat.v4.new_code_cell("print(accuracy)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=printed)])
    nb = nbformat.v4.new_notebook(cells=[code, nbformat.v4.new_markdown_cell("**Observation.** Accuracy 0.8913.")])
    nbformat.write(nb, folder / "study.ipynb")
    return folder / "study.ipynb"


def test_a_report_is_removed_once_the_numbers_repeat_and_nothing_is_written_when_they_do(tmp_path):
    path = written_study(tmp_path, "0.8917")
    assert prose_command(tmp_path, SKYLAKEX) == 0
    banner, _ = tagged(nbformat.read(path, as_version=4))
    assert nbformat.read(path, as_version=4).cells[0].source == banner  # no title: the banner opens the notebook
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].outputs[0].text = "0.8913"  # a run on the recorded kernels, its numbers those quoted
    nbformat.write(nb, path)
    assert prose_command(tmp_path, HASWELL) == 0
    assert tagged(nbformat.read(path, as_version=4)) == []
    written = path.stat().st_mtime_ns
    assert prose_command(tmp_path, SKYLAKEX) == 0  # other kernels, nothing moved: nothing to say
    assert path.stat().st_mtime_ns == written


def test_the_recorded_kernels_are_the_committed_recipes(tmp_path):
    """A fresh run rewrites the recipes with its own kernels: the quoted numbers' are those git's HEAD holds."""
    import subprocess

    written_study(tmp_path, "0.8913")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "log"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "recorded"], check=True)
    recipe = tmp_path / "log" / "grid_search.recipe.json"
    recipe.write_text(json.dumps({"recipe": {}, "data": [], "blas": SKYLAKEX}))  # as the run left it
    assert prose.recorded_kernels(tmp_path / "log") == {"grid_search.recipe.json": HASWELL}
    subprocess.run(["rm", "-rf", str(tmp_path / ".git")], check=True)
    assert prose.recorded_kernels(tmp_path / "log") == {"grid_search.recipe.json": SKYLAKEX}  # no git: as they are
