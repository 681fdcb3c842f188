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
    index, source = prose.observation_cells(nb)[0]
    token = next(m.group() for m in prose.NUMBER.finditer(source) if "." in m.group() and prose.checked(m.group()))
    last = int(token[-1])
    moved = token[:-1] + str((last + 5) % 10)  # half a unit of the last digit away would round back
    nb.cells[index].source = source.replace(token, moved, 1)
    missing = prose.unchecked_numbers(nb, results)
    assert [(i, t) for i, t, _ in missing] == [(index, moved)]


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
