"""study.tidy: the executed notebook keeps each progress bar's final state and no widget state."""

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
    own = nbformat.v4.new_code_cell("FRESH = False", metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell("# Parameters\nFRESH = True\n", metadata={"tags": ["injected-parameters"]})
    nb = nbformat.v4.new_notebook(cells=[own, injected, nbformat.v4.new_code_cell("train()")])
    tidied = tidy.tidy_notebook(nb)
    assert [cell.source for cell in tidied.cells] == ["FRESH = False", "train()"]
