"""The executed notebook made to read cleanly wherever it is read: ``python -m study.tidy NOTEBOOK ...``.

A progress bar (tqdm on stdout) redraws its line with carriage returns. Jupyter shows the bar moving and, when it
saves the notebook, keeps only what is on screen; an execution by papermill or nbclient stores every state the
kernel sent instead, one stream output each, so that a notebook viewer without Jupyter (nbconvert's HTML, a code
host's preview) shows dozens of lines per bar. :func:`tidy_notebook` leaves what a terminal would show: consecutive
stream outputs of a cell merged, and each line reduced to its last state. It also drops the widget state that a
front end may leave in the metadata, and the cell of parameters that papermill injects: the committed notebook keeps
only its own parameters cell, so that Run All in Jupyter resumes (``FRESH = False``) instead of repeating
``make run``'s fresh run. ``make run`` calls it on the notebook papermill has written.
"""

import argparse
import sys

import nbformat

from solver import atomic_write


def final_states(text):
    """``text`` as a terminal leaves it: each line (``\\n``) reduced to what follows its last carriage return
    (``\\r``), as a progress bar that redraws itself ends; ``\\r\\n`` is an ordinary line end."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(next((part for part in reversed(line.split("\r")) if part), "") for line in lines)


def tidy_outputs(outputs):
    """Consecutive stream outputs of the same name merged into one, progress states reduced to their last one
    (:func:`final_states`), streams left empty dropped; other outputs as they were."""
    tidied = []
    for output in outputs:
        previous = tidied[-1] if tidied else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] += output["text"]
        else:
            tidied.append(output)
    for output in tidied:
        if output.get("output_type") == "stream":
            output["text"] = final_states(output["text"])
    return [output for output in tidied if output.get("output_type") != "stream" or output["text"]]


INJECTED_TAG = "injected-parameters"  # papermill's tag on the cell of the parameters it was given


def tidy_notebook(nb):
    """:func:`tidy_outputs` on every code cell of ``nb`` (an nbformat notebook), no cell of injected parameters and
    no widget state in its metadata; ``nb`` is changed in place and returned."""
    nb.cells = [cell for cell in nb.cells if INJECTED_TAG not in cell.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = tidy_outputs(cell.outputs)
    nb.metadata.pop("widgets", None)
    return nb


def tidy_file(path):
    """Tidy the notebook file at ``path`` in place (atomically)."""
    nb = tidy_notebook(nbformat.read(path, as_version=nbformat.NO_CONVERT))
    text = nbformat.writes(nb)
    atomic_write(path, lambda f: f.write((text if text.endswith("\n") else text + "\n").encode("utf-8")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", help="executed notebooks to tidy in place")
    for path in parser.parse_args(argv).notebooks:
        tidy_file(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
