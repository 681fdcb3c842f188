"""study.tidy: the executed notebook keeps each progress bar's final state and no widget state."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from study import tidy


@pytest.mark.parametrize("text, expected", [
    ("\rgrid:  0%|\rgrid: 50%|\rgrid: 100%|\n", "grid: 100%|\n"),
    ("plain line\nanother\n", "plain line\nanother\n"),
    ("a\r\nb\r\n", "a\nb\n"),  # Windows line ends are line ends
    ("\rbar 1/2\rbar 2/2\ndone\n\rnext 1/3\rnext 3/3\n", "bar 2/2\ndone\nnext 3/3\n"),
    ("\rbar 2/2\r\n", "bar 2/2\n"),
    ("state\r", "state"),  # a bar not yet closed: its last state
    ("\r     \r\n", "     \n"),
])
def test_final_states(text, expected):
    assert tidy.final_states(text) == expected


def stream(text, name="stdout"):
    return nbformat.v4.new_output("stream", name=name, text=text)


def test_consecutive_streams_merge_and_keep_their_last_state_other_outputs_stay_in_place():
    figure = nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"})
    outputs = [stream("== 3. Hyperparameter tuning\n"), stream("\rgrid search:   0%|"),
               stream("\rgrid search:  50%|"), stream("\rgrid search: 100%|"), stream("\n"),
               stream("a warning\n", "stderr"), stream("48 runs in the log\n"), figure, stream("\r\r"),
               stream("after the figure\n")]
    tidied = tidy.tidy_outputs(outputs)
    assert [(o.output_type, o.get("name"), o.get("text")) for o in tidied] == [
        ("stream", "stdout", "== 3. Hyperparameter tuning\ngrid search: 100%|\n"),
        ("stream", "stderr", "a warning\n"),
        ("stream", "stdout", "48 runs in the log\n"),
        ("display_data", None, None),
        ("stream", "stdout", "after the figure\n"),
    ]


def test_tidy_file_rewrites_the_notebook_in_place(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [stream("\rrun 1/2"), stream("\rrun 2/2"), stream("\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), cell]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    assert tidy.main([str(path)]) == 0
    again = nbformat.read(path, as_version=4)
    assert again.cells[1].outputs == [stream("run 2/2\n")]
    assert "widgets" not in again.metadata
    assert again.cells[0].source == "# title"
    text = path.read_text()
    assert text.endswith("}\n") and "\\r" not in text
    tidy.tidy_file(path)
    assert path.read_text() == text  # tidying twice changes nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["executed.ipynb"]


def test_papermill_s_injected_parameters_cell_is_dropped_and_the_notebook_s_own_parameters_cell_kept():
    own = nbformat.v4.new_code_cell("FRESH = False", metadata={"tags": ["parameters"]}, execution_count=1)
    injected = nbformat.v4.new_code_cell("# Parameters\nFRESH = True\n", metadata={"tags": ["injected-parameters"]},
                                         execution_count=2)
    train = nbformat.v4.new_code_cell("train()", execution_count=3)
    train.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=3)]
    nb = nbformat.v4.new_notebook(cells=[own, injected, train])
    tidied = tidy.tidy_notebook(nb)
    assert [cell.source for cell in tidied.cells] == ["FRESH = False", "train()"]
    assert [cell.execution_count for cell in tidied.cells] == [1, 2]  # numbered as Run All numbers them
    assert tidied.cells[1].outputs[0].execution_count == 2


# -- files that are not notebooks -----------------------------------------------------------------------------------


def _executed_notebook():
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [stream("\rrun 1/2"), stream("\rrun 2/2\n")]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title"), cell])


def _cell_without_outputs():
    nb = json.loads(nbformat.writes(_executed_notebook()))
    del nb["cells"][1]["outputs"]
    return json.dumps(nb)


NOT_NOTEBOOKS = {  # what the file holds: (its bytes, or None for no file; what the message must say)
    "no file": (None, "not found"),
    "empty": (b"", "empty"),
    "truncated": (lambda: nbformat.writes(_executed_notebook())[:300].encode(), "cut short"),
    "csv": (b"a,b\n1,2\n", "not JSON"),
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8"),
    "json array": (b"[1, 2]", "found a JSON array"),
    "other json": (b'{"runs": 48}', "without an nbformat field"),
    "nbformat 3": (b'{"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}', "found nbformat 3"),
    "no cells": (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "list of cells"),
    "cells not a list": (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": 3}', "list of cells"),
    "a cell without outputs": (lambda: _cell_without_outputs().encode(), "'outputs' is a required property"),
}


@pytest.mark.parametrize("case", NOT_NOTEBOOKS)
def test_a_file_that_is_not_a_notebook_is_left_alone_with_a_one_sentence_error(tmp_path, capsys, case):
    content, message = NOT_NOTEBOOKS[case]
    path = tmp_path / "executed.ipynb"
    if content is not None:
        content = content() if callable(content) else content
        path.write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir())

    assert tidy.main([str(path)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("python -m study.tidy: error: ") and err.count("\n") == 1, err
    assert str(path) in err and message in err
    assert "make run" in err or "give the path" in err  # what to do
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if content is not None:
        assert path.read_bytes() == content
    with pytest.raises(tidy.NotANotebook, match=re.escape(str(path))):
        tidy.tidy_file(path)


def test_notebooks_before_a_broken_one_are_tidied_and_those_after_it_left_alone(tmp_path, capsys):
    paths = [tmp_path / name for name in ("first.ipynb", "broken.ipynb", "last.ipynb")]
    nbformat.write(_executed_notebook(), paths[0])
    paths[1].write_text("{")
    nbformat.write(_executed_notebook(), paths[2])
    untidy = paths[2].read_bytes()
    assert tidy.main([str(p) for p in paths]) == 2
    assert nbformat.read(paths[0], as_version=4).cells[1].outputs == [stream("run 2/2\n")]
    assert paths[2].read_bytes() == untidy
    assert "broken.ipynb" in capsys.readouterr().err


def test_the_command_exits_with_status_2_and_no_traceback(tmp_path):
    path = tmp_path / "executed.ipynb"
    path.write_text(nbformat.writes(_executed_notebook())[:-40])
    done = subprocess.run([sys.executable, "-m", "study.tidy", str(path)], capture_output=True, text=True,
                          cwd=Path(tidy.__file__).resolve().parent.parent, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and str(path) in done.stderr and "cut short" in done.stderr
