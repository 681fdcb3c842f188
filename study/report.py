"""The study's results: ``log/results.json``, to which each notebook's last cell writes its part, and the README's
results section, which this module copies from it (as ``study.readme`` renders it), between ``<!-- results:start
-->`` and ``<!-- results:end -->``.

    python -m study.report [--root DIR]

:func:`save_results` writes one notebook's part (``study_results.measured``, ``how_far.results``) into that file,
keeping the other's, and :func:`write_results` writes it with a description of the machine (:func:`machine_info`,
which the benchmarks record too); :func:`glance` shows its models at a glance at the top of each notebook.

Run as a script, the module reads ``log/results.json``, ``log/grid_search.csv`` and, if present, the benchmarks'
``results.json``, ``beyond_results.json`` and ``grid_results.json`` in ``bench/``, all under ``--root`` (default:
the repository), and replaces what lies between the two markers of ``README.md`` with: the top five runs of the
grid, the test accuracy with its exact 95% interval and the loss, the learning-rate follow-up, successive halving
beside the grid, section 7's comparison with McNemar's tests against the seed grid's best, section 8's seeds and
where the single run and the original study fall among them, the wall times of each part and of the whole notebook,
the machine, the benchmarks, and links to a few figures. Parts that ``results.json`` does not hold (one written
before they existed) are left out. Everything outside the markers is left as it is; the file is replaced
atomically.
"""

import argparse
import json
import math
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_info

from fileio import atomic_write
from study import budget, grid
from study.benches import bench_paragraphs
from study.readme import FIGURES, glance_markdown, render
from study.results_shape import is_number, shape_problem


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _blas():
    """NumPy's BLAS, and the kernels OpenBLAS runs on this processor (its own choice, or OPENBLAS_CORETYPE's: see the
    Makefile's ``bench``), which set the speed of every matrix product."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # older NumPy has no mode="dicts"; the description is a nicety, never a failure
        return None
    kernels = sorted({info["architecture"] for info in threadpool_info()
                      if info.get("internal_api") == "openblas" and info.get("architecture")})
    name = " ".join(str(blas[key]) for key in ("name", "version") if blas.get(key))
    return (name + (f" ({', '.join(kernels)} kernels)" if kernels else "")) or None


def machine_info():
    """Processor, architecture, core count, Python, NumPy and BLAS of this machine, as a JSON-ready dict."""
    return {
        "processor": platform.processor() or _cpu_model() or platform.machine(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
    }


def _json_ready(value):
    """NumPy scalars and arrays, tuples, Paths and DataFrames made plain JSON values; NaN becomes null."""
    if isinstance(value, pd.DataFrame):
        return [_json_ready(row) for row in value.to_dict("records")]
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v) for v in value]
    if value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_results(path, results):
    """Write ``results`` (plus the machine and a UTC timestamp) as JSON to ``path``, atomically; return it."""
    payload = _json_ready({**results, "machine": machine_info(),
                           "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return payload


# What differs from one execution to the next although no number changed: its wall times and how much it trained.
EXECUTION_KEYS = {"wall_time_s", "notebook_wall_time_s", "sections_wall_time_s", "trained_now", "n_jobs",
                  "runs_trained", "machine", "written_at"}


def measured_numbers(results):
    """``results`` (as JSON holds them) without :data:`EXECUTION_KEYS`, at any depth: the numbers of the study, each
    float to 12 significant digits. A measurement in float64 sums in the order of the machine's BLAS kernel, which
    moves its last bits (1e-16 of it) from one machine to another: that is not another number."""
    if isinstance(results, dict):
        return {key: measured_numbers(value) for key, value in results.items() if key not in EXECUTION_KEYS}
    if isinstance(results, list):
        return [measured_numbers(value) for value in results]
    if isinstance(results, float) and math.isfinite(results):
        return float(f"{results:.12g}")
    return results


# Parts of the results that no notebook measures any more (successive halving, the learning-rate follow-up, the
# validation/test shift and the drop taken apart, once the first notebook's): :func:`save_results` takes them out.
RETIRED_KEYS = ("halving", "lr_followup", "shift", "drop")


# Parts of the results that a long job moves as its records land (section 10's, ``make teacher``), not the notebook
# that writes them: an execution that trained nothing writes them anew from the records where they moved, instead of
# refusing them as it refuses other moved numbers.
JOB_PARTS = ("teacher",)


def save_results(path, results, runs_trained=None):
    """Write ``results``, one notebook's part of the results, into ``path``: its keys replace those recorded, the
    other notebook's keys stay as they are (:func:`write_results`), and :data:`RETIRED_KEYS` are left out.
    ``runs_trained`` is how many runs the execution trained (default: ``results["runs_trained"]``, which
    ``study_results.measured`` records). Return what the file then holds.

    An execution that trained nothing read every number from the logs and records: when the file already holds
    each of its keys with the same numbers and none retired, it stays byte for byte as it was, with the wall
    times of the execution that trained them, unless a long job's part moved (:data:`JOB_PARTS`). ValueError if
    another key it holds has other numbers than those just computed: the logs or weights changed after it was
    written, and a run that trains (``make run``) should measure them afresh.
    """
    path = Path(path)
    trained = results["runs_trained"] if runs_trained is None else runs_trained
    recorded = {}
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            if not trained:
                raise ValueError(f"{path} is not a readable results file ({error}): restore it (git checkout -- "
                                 f"{path.name}) or run `make run` to measure the study afresh") from None
    ready = _json_ready(results)
    if not trained and recorded:
        moved = {key for key in ready
                 if key in recorded and measured_numbers(recorded[key]) != measured_numbers(ready[key])}
        differs = sorted(moved - EXECUTION_KEYS - set(JOB_PARTS))
        if differs:
            raise ValueError(f"{path} records other numbers than the logs and weights give now (in {differs}): they "
                             "changed since it was written; run `make run` to train and measure the study afresh")
        if set(ready) <= set(recorded) and not set(RETIRED_KEYS) & set(recorded) and not moved & set(JOB_PARTS):
            return recorded
    kept = {key: value for key, value in recorded.items() if key not in ("machine", "written_at", *RETIRED_KEYS)}
    return write_results(path, {**kept, **results})


def glance(path, here):
    """The study's models at a glance (``readme.glance_markdown``), as markdown, from the results file at ``path``
    for the notebook ``here`` (whose sections it links within the page); a line saying so when there is none yet."""
    if not Path(path).exists():
        return "_No results yet: each notebook's last cell writes its part of them._"
    return glance_markdown(read_results(path), here=here)


# -- the README's results ----------------------------------------------------------------------------------------


class ReportError(Exception):
    """Something the report needs is missing or unusable; the message says what to do."""


START = "<!-- results:start -->"
END = "<!-- results:end -->"


def replace_block(text, block, source="README.md"):
    """``text`` with everything between the markers replaced by ``block``; ReportError unless each marker
    occurs exactly once, start before end."""
    counts = {marker: text.count(marker) for marker in (START, END)}
    if counts != {START: 1, END: 1} or text.index(START) > text.index(END):
        raise ReportError(
            f"{source} must contain the line {START} followed later by the line {END}, each exactly once "
            f"(found {counts[START]} start and {counts[END]} end markers"
            + (", in the wrong order" if counts == {START: 1, END: 1} else "")
            + "). Add them where the results should go; python -m study.report rewrites what lies between them."
        )
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block}\n{END}{tail}"



def _again(path, how):
    """What to do about the file ``path``: write it again as ``how`` says, or take back the committed one."""
    return f"{how}, or restore the committed one (git checkout -- {path})"


def _read_json(path, what):
    """The JSON in ``path``; ReportError naming the file when it is missing (``what`` says what to do), unreadable
    or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path} not found: {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = f"{error.msg} at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else "not UTF-8"
        raise ReportError(f"{path} is not valid JSON ({problem}; cut short or edited, perhaps)") from None
    except OSError as error:
        raise ReportError(f"{path} could not be read ({error.strerror or error})") from None


RUN_AGAIN = "run the notebook again (make run) to write it"


def read_results(path):
    """The results the notebook wrote to ``path``, checked against ``results_shape.RESULTS_SHAPE``; ReportError
    naming the file and what to do when it is missing, not JSON, or not of that shape."""
    try:
        results = _read_json(path, "run Fashion_mnist_model.ipynb first (its last cell writes it)")
    except ReportError as error:
        if "not found" in str(error):
            raise
        raise ReportError(f"{error}: {_again(path, RUN_AGAIN)}") from None
    problem = shape_problem(results)
    if problem:
        raise ReportError(f"{path} is not a results file this report can read ({problem}): "
                          f"{_again(path, RUN_AGAIN)}")
    return results


def _read_csv_log(path, read, how):
    """``read(path)``, a log checked by its own reader (``grid.read_log``, ``budget.read_budget_log``), with any error
    it raises made a ReportError that names the file and says what to do (``how``)."""
    try:
        return read(path)
    except (ValueError, OSError) as error:  # pandas' parser errors are ValueErrors
        if str(path) in str(error):  # the reader's own message, which says what to do
            raise ReportError(str(error)) from None
        raise ReportError(f"{path} could not be read as a log ({error}): {_again(path, how)}") from None


def _bench_paragraphs(bench_dir):
    """``benches.bench_paragraphs``, with a benchmark file it cannot read made a ReportError naming the file (or,
    when every file is JSON but one lacks what the README shows, the folder)."""
    try:
        return bench_paragraphs(bench_dir)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        for path in sorted(bench_dir.glob("*.json")):
            try:
                _read_json(path, "")
            except ReportError as unreadable:
                raise ReportError(f"{unreadable}: {_again(path, 'run its benchmark again (make bench)')}") from None
        raise ReportError(f"a benchmark's results in {bench_dir} lack what the README shows "
                          f"({type(error).__name__}: {error}): run the benchmarks again (make bench, make bench-grid), "
                          f"or restore the committed files (git checkout -- {bench_dir})") from error


def build(root):
    """Read the inputs under ``root`` and return the new README text."""
    root = Path(root)
    readme = root / "README.md"
    results_path = root / "log" / "results.json"
    results = read_results(results_path)
    if results.get("quick"):
        raise ReportError(f"{results_path} comes from a quick run (QUICK = True); "
                          "run the full notebook before reporting")
    log_path = root / "log" / "grid_search.csv"
    if not log_path.exists():
        raise ReportError(f"{log_path} not found: run the grid search of Fashion_mnist_model.ipynb first")
    log = _read_csv_log(log_path, grid.read_log, "run the grid search again (make run)")
    benches = _bench_paragraphs(root / "bench")
    budget_path = root / "log" / "wide_budget.csv"
    budget_log = None
    if budget_path.exists():
        again = "train the budgets again (make budget)"
        budget_log = _read_csv_log(budget_path, budget.read_budget_log, again)
        try:
            if "beyond" in results:  # where the README shows the budgets
                budget.choose_budget(budget_log)
        except ValueError as error:
            raise ReportError(f"{budget_path} gives no budget ({error}): {_again(budget_path, again)}") from None
    run_all_path = root / "log" / "run_all.json"
    run_all = _read_json(run_all_path, "") if run_all_path.exists() else None
    run_all_keys = ("wall_time_s", "runs_trained", "changed_files", "differing_cells")
    if run_all is not None and not (isinstance(run_all, dict) and all(is_number(run_all.get(key))
                                                                      for key in run_all_keys)):
        raise ReportError(f"{run_all_path} is not a record of Run All (it needs wall_time_s, runs_trained, "
                          "changed_files and differing_cells): run `make run-all` again to write it")
    figures = [(name, caption) for name, caption in FIGURES if (root / "figures" / name).exists()]
    try:
        text = readme.read_bytes().decode("utf-8")  # bytes: line endings stay as they are
    except FileNotFoundError:
        raise ReportError(f"{readme} not found") from None
    try:
        block = render(results, log, benches, figures, budget_log, run_all)
    except (KeyError, IndexError, TypeError, AttributeError, ZeroDivisionError, ValueError) as error:
        # RESULTS_SHAPE holds what render reads; this is for a part of the file it does not describe (the logs
        # were checked by their readers above).
        raise ReportError(f"{results_path} lacks what the report reads ({type(error).__name__}: {error}): "
                          f"{_again(results_path, RUN_AGAIN)}") from error
    return replace_block(text, block, source=str(readme))


def main(argv=None):
    """Rewrite the README's results from the files under ``--root``; 0, or 2 and one sentence on stderr (the README
    left as it was) when a file is missing or is not what the report reads."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="folder holding README.md, log/, figures/ and bench/ (default: the repository's)")
    args = parser.parse_args(argv)
    try:
        text = build(args.root)
    except (ReportError, ValueError) as error:  # the README is left as it was
        print(f"python -m study.report: error: {error}", file=sys.stderr)
        return 2
    readme = args.root / "README.md"
    atomic_write(readme, lambda f: f.write(text.encode("utf-8")))
    print(f"updated the results in {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
