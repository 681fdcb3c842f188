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
import json
import sys
import warnings
from pathlib import Path

import nbformat
from nbformat.warnings import MissingIDFieldWarning

from fileio import atomic_write


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
    """:func:`tidy_outputs` on every code cell of ``nb`` (an nbformat notebook), no cell of injected parameters (the
    executed cells numbered again from 1, as a Run All numbers them) and no widget state in its metadata; ``nb`` is
    changed in place and returned."""
    nb.cells = [cell for cell in nb.cells if INJECTED_TAG not in cell.get("metadata", {}).get("tags", [])]
    executed = [cell for cell in nb.cells if cell.cell_type == "code" and cell.get("execution_count") is not None]
    for count, cell in enumerate(executed, start=1):
        cell.execution_count = count
        for output in cell.outputs:
            if "execution_count" in output:
                output.execution_count = count
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = tidy_outputs(cell.outputs)
    nb.metadata.pop("widgets", None)
    return nb


class NotANotebook(ValueError):
    """A file given to tidy is not a notebook it can read; the message names the file and says what to do."""


AGAIN = "execute the notebook again (make run) or restore it (git checkout -- FILE)"


def _ends_open(text):
    """Whether JSON ``text`` ends inside a string or with a bracket still open: cut short rather than malformed."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = char == "\\", char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return in_string or depth > 0


def read_notebook(path):
    """The notebook in the file at ``path``, as ``nbformat.read(path, as_version=nbformat.NO_CONVERT)`` reads it,
    but :class:`NotANotebook` (naming the file) unless the file is there, is JSON text and is a valid notebook of
    format 4 (nbformat then only logs an invalid notebook, and fails on other JSON with errors that name no file)."""
    path = Path(path)
    again = AGAIN.replace("FILE", str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotANotebook(f"{path} not found: give the path of an executed notebook, as `make run` does "
                           "(python -m study.tidy Fashion_mnist_model.ipynb)") from None
    except UnicodeDecodeError:
        raise NotANotebook(f"{path} is not a notebook but binary data (not UTF-8 text): give the path of an executed "
                           "notebook") from None
    except OSError as error:
        raise NotANotebook(f"{path} could not be read ({error.strerror or error}): give the path of an executed "
                           "notebook file") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        if not text.strip():
            raise NotANotebook(f"{path} is empty, not a notebook: {again}") from None
        if text.lstrip().startswith("{") and _ends_open(text):
            raise NotANotebook(f"{path} is cut short, not a whole notebook (its JSON object never closes), perhaps "
                               f"by an interrupted execution: {again}") from None
        raise NotANotebook(f"{path} is not a notebook: it is not JSON ({error.msg} at line {error.lineno}, column "
                           f"{error.colno}); give the path of an executed notebook") from None
    version = content.get("nbformat") if isinstance(content, dict) else None
    if version != 4:
        kinds = {list: "a JSON array", str: "a JSON string", int: "a JSON number", float: "a JSON number"}
        found = (kinds.get(type(content), f"JSON {json.dumps(content)}") if not isinstance(content, dict) else
                 "a JSON object without an nbformat field" if version is None else f"nbformat {version!r}")
        raise NotANotebook(f"{path} is not a Jupyter notebook of format 4 (found {found}): give the path of the "
                           "executed notebook that papermill or Jupyter saved")
    cells = content.get("cells")
    if not isinstance(content.get("nbformat_minor"), int) or not (
            isinstance(cells, list) and all(isinstance(cell, dict) for cell in cells)):
        raise NotANotebook(f"{path} is not a valid notebook of format 4 (it lacks an integer nbformat_minor or a list "
                           f"of cells): {again}")
    try:
        with warnings.catch_warnings():  # a cell without an id: Jupyter and nbformat's writer add one
            warnings.simplefilter("ignore", MissingIDFieldWarning)
            nbformat.validate(content)  # before nbformat reads it: its reader fails on invalid notebooks
    except nbformat.ValidationError as error:
        where = "/".join(str(part) for part in getattr(error, "absolute_path", ()))
        problem = str(getattr(error, "message", error)).splitlines()[0]
        if len(problem) > 100:  # jsonschema's message can quote a whole cell
            problem = f"it fails the notebook schema's {getattr(error, 'validator', 'validation')} rule"
        raise NotANotebook(f"{path} is not a valid notebook of format 4 ({problem}"
                           + (f" at {where}" if where else "") + f"): {again}") from None
    return nbformat.reader.reads(text)


def tidy_file(path):
    """Tidy the notebook file at ``path`` in place (atomically); :class:`NotANotebook` (and the file untouched) when
    it is not one (:func:`read_notebook`)."""
    nb = tidy_notebook(read_notebook(path))
    text = nbformat.writes(nb)
    atomic_write(path, lambda f: f.write((text if text.endswith("\n") else text + "\n").encode("utf-8")))


def main(argv=None):
    """Tidy each notebook named in ``argv`` in order; 0, or 2 at the first file that is not a notebook of format 4
    (missing, cut short, other JSON, invalid), which is left untouched and named in one sentence on stderr."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", help="executed notebooks to tidy in place")
    for path in parser.parse_args(argv).notebooks:
        try:
            tidy_file(path)
        except NotANotebook as error:  # the notebooks before it are tidied, those after it left alone
            print(f"python -m study.tidy: error: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
