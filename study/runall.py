"""Run All, as a notebook's reader runs it: each committed notebook executed on a fresh clone, with its own
parameters (``FRESH = False``), must read everything it shows from the committed logs, records and weights, train
nothing, leave every tracked file as it was, and print the numbers the committed notebook shows; and every snippet of
its "Try it yourself" cell must then run in the same kernel.

    python -m study.runall [--write]

clones the repository's last commit into a temporary folder, executes both notebooks there in turn as Jupyter's Run
All does (nbclient, one kernel each, the cells in order, no parameters injected), then each notebook's exercise
snippets (:func:`exercises`), and reports for each notebook the wall time, how many runs it trained, the cells that
printed other numbers than the committed ones and the snippets that failed, and the tracked files changed.
``--write`` records them in ``log/run_all.json`` for the README. ``tests/test_run_all.py`` holds the same checks.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from fileio import atomic_write
from study import config

NOTEBOOKS = ("Fashion_mnist_model.ipynb", "How_far_can_an_MLP_go.ipynb")  # in order: the second reads the first's
EXERCISES_ANCHOR = '<a id="try-it-yourself"></a>'
SNIPPET = re.compile(r"^( *)```python\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
RECORD = Path("log") / "run_all.json"

# What differs between the execution that trained the study and one that read it, although no result changed: the
# progress bars (absent where nothing trains), the wall times, how much this execution trained, and whether it was
# asked to train afresh.
PROGRESS_BAR = re.compile(r"\|.*\|\s*\d+/\d+ \[")
DURATION = re.compile(r"\b\d+(\.\d+)? ?(ms|s|min|h)\b")
TRAINED = re.compile(r"\b\d+ trained now\b|^this execution trained .*$"
                     r"|\bFRESH = (True|False) \([^)]*\)(?=, \d+ processes)")
# The gradient check's errors are rounding noise whose digits the BLAS kernels set (OpenBLAS's Haswell and SkylakeX
# kernels round the same float64 products differently): one below 1e-6, where a right gradient's errors lie on every
# processor, is compared as such; a larger one, a wrong gradient, as printed.
GRADIENT_ERROR = re.compile(r"(?<=largest relative error )\d\.\de-\d+")


def clone(repo, destination):
    """A fresh clone of ``repo``'s last commit at ``destination``: what a reader gets."""
    subprocess.run(["git", "clone", "--quiet", str(repo), str(destination)], check=True)
    return Path(destination)


def exercises(nb):
    """The Python snippets (fenced ```python blocks, unindented) of the notebook's "Try it yourself" cell."""
    cells = [cell.source for cell in nb.cells if cell.cell_type == "markdown" and EXERCISES_ANCHOR in cell.source]
    return [textwrap.dedent("\n".join(line[len(indent):] for line in body.splitlines()))
            for source in cells for indent, body in SNIPPET.findall(source)]


def execute(root, notebook, timeout=1800):
    """Execute ``root``'s ``notebook`` in a kernel started in ``root``, cell after cell, with the notebook's own
    parameters, then its exercise snippets in the same kernel; return the executed notebook (the file is not
    written), the wall time in seconds of the notebook's cells, and ``{snippet: error}`` for each snippet that
    failed."""
    nb = nbformat.read(Path(root) / notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(root)}})
    failed = {}
    with client.setup_kernel():
        started = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        wall_s = time.perf_counter() - started
        for snippet in exercises(nb):
            nb.cells.append(nbformat.v4.new_code_cell(snippet))  # where the client writes its outputs, for a moment
            try:
                client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
            except CellExecutionError as error:
                failed[snippet] = f"{error.ename}: {error.evalue}"
            finally:
                nb.cells.pop()
    return nb, wall_s, failed


def changed_files(root):
    """The tracked files of the clone at ``root`` that are no longer as committed, and the untracked ones git does
    not ignore."""
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, check=True, capture_output=True, text=True)
    return [line[3:] for line in status.stdout.splitlines()]


def printed(cell):
    """What a code cell printed and displayed as text, without what differs from one execution to the next."""
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(output["text"])
        elif output.get("output_type") in ("execute_result", "display_data"):
            texts.append(output.get("data", {}).get("text/plain", ""))
        elif output.get("output_type") == "error":
            texts.append(f"{output['ename']}: {output['evalue']}")
    lines = "\n".join(texts).splitlines()
    return [GRADIENT_ERROR.sub(rounding_noise, TRAINED.sub("<trained>", DURATION.sub("<time>", line))) for line in lines
            if line.strip() and not PROGRESS_BAR.search(line)]


def rounding_noise(error):
    """A gradient check's printed error (a match of ``GRADIENT_ERROR``) as :func:`printed` compares it."""
    return "<below 1e-6>" if float(error.group()) < 1e-6 else error.group()


def differing_cells(committed, executed):
    """The code cells (counted from 0 among the code cells) whose printed text differs, with both versions."""
    pairs = zip([c for c in committed.cells if c.cell_type == "code"],
                [c for c in executed.cells if c.cell_type == "code"], strict=True)
    return {i: (printed(old), printed(new)) for i, (old, new) in enumerate(pairs) if printed(old) != printed(new)}


def runs_trained(executed):
    """How many runs the execution says it trained (the last cell's line), or None if it does not say."""
    for cell in reversed(executed.cells):
        for output in cell.get("outputs", []):
            found = re.search(r"this execution trained (\d+) runs", output.get("text", ""))
            if found:
                return int(found.group(1))
    return None


def check(repo=config.REPO_DIR, workdir=None, cell_timeout=1800, notebooks=NOTEBOOKS):
    """Run All of each of ``notebooks`` on one fresh clone of ``repo`` in ``workdir`` (a new temporary folder if
    None): ``{"notebooks": {name: {"wall_time_s", "runs_trained", "differing_cells", "failed_exercises"}},
    "changed_files": [...]}``. A cell that runs longer than ``cell_timeout`` seconds stops it (nbclient's
    CellTimeoutError): reading takes seconds, training minutes."""
    root = clone(repo, Path(workdir or tempfile.mkdtemp(prefix="fmnist_run_all_")) / "clone")
    found = {}
    for notebook in notebooks:
        committed = nbformat.read(root / notebook, as_version=4)
        executed, wall_s, failed = execute(root, notebook, cell_timeout)
        found[notebook] = {"wall_time_s": wall_s, "runs_trained": runs_trained(executed),
                           "differing_cells": differing_cells(committed, executed), "failed_exercises": failed}
    return {"notebooks": found, "changed_files": changed_files(root)}


def record(found):
    """What ``log/run_all.json`` keeps of :func:`check`'s result: each notebook's wall time and counts, and the
    totals the README shows."""
    notebooks = {name: {"wall_time_s": round(each["wall_time_s"], 1), "runs_trained": each["runs_trained"],
                        "differing_cells": len(each["differing_cells"]),
                        "failed_exercises": len(each["failed_exercises"])}
                 for name, each in found["notebooks"].items()}
    trained = [each["runs_trained"] for each in notebooks.values()]
    return {"wall_time_s": round(sum(each["wall_time_s"] for each in notebooks.values()), 1),
            "runs_trained": None if None in trained else sum(trained),
            "changed_files": len(found["changed_files"]),
            "differing_cells": sum(each["differing_cells"] for each in notebooks.values()),
            "failed_exercises": sum(each["failed_exercises"] for each in notebooks.values()), "notebooks": notebooks}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"record the wall times in {RECORD}")
    args = parser.parse_args(argv)
    found = check()
    print(json.dumps(found, indent=1))
    kept = record(found)
    if args.write:
        atomic_write(config.REPO_DIR / RECORD, lambda f: f.write((json.dumps(kept, indent=1) + "\n").encode()))
    ok = kept["runs_trained"] == 0 and not (kept["changed_files"] or kept["differing_cells"]
                                            or kept["failed_exercises"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
