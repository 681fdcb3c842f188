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
    assert prose.main([str(tmp_path / "nb.ipynb"), "--results", str(tmp_path / "results.json")]) == 1
    assert re.search(r"cell 0: 0\.9123 is in no output", capsys.readouterr().out)


def test_a_summary_is_checked_as_an_observation_is():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("**Summary.** Accuracy 0.9123.")])
    assert [index for index, _ in prose.observation_cells(nb)] == [0]
