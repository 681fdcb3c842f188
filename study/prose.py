"""Every number in the notebook's observations comes from the run: each one is looked up in what the executed
notebook printed and in ``log/results.json``, at the precision it is written.

    python -m study.prose [NOTEBOOK] [--results log/results.json]

lists the numbers of the observation cells (the Markdown cells that open with ``**Observation`` or ``**Summary``,
a section's closing lines) that no output of
the notebook and no value of the results holds, and exits 1 if there are any: after an execution that moved a
number, the sentence that quotes it must be updated. ``make run`` calls it after the notebook has run.

A number is found when an output prints it as written (``0.9045``, ``10,000``), or when a value rounds to it at its
precision (with its significant digits, for ``1.4e-7``), either as it is or, for a number of at most two decimals,
times 100 (a share written as a percentage, a difference of accuracies as points). Whole numbers
below 100 without a percent sign (section numbers, counts of a few things) are not looked up: too many outputs hold
them for a match to mean anything. :data:`CONSTANTS` lists the few numbers that come from elsewhere.

Numbers move for two reasons, told apart by the BLAS kernels. The quoted numbers were recorded on the kernels that
the committed logs' recipes name (``log/*.recipe.json`` as git's HEAD holds them, else as they are: a fresh run
rewrites them with its own), and this run computed on the kernels threadpoolctl reports here (the command runs in
``make run``'s environment, as the notebook's kernel did):

- on the same kernels every number must repeat: a moved one means the code changed, and the command fails as above;
- on other kernels (OpenBLAS picks SkylakeX's on many AVX-512 processors, Haswell's on others) the float32 sums round
  differently in their last bits and training carries that into visible digits. The command then writes what moved
  into the notebook and exits 0: a banner at its top (the kernels that recorded the quoted numbers, this run's, how
  many quoted numbers moved) and an appendix at its end listing every moved number with its sentence. Both are
  Markdown cells tagged :data:`REPORT_TAG`, replaced by the next check and removed once nothing moved on the
  recorded kernels.

A conclusion that such a run can flip (the grid's best setting, an order, a choice, a test's verdict) is not typed:
the code cell prints it from the run's values, and the observation refers to what it printed ("the setting printed
above"), or states the spread within which it holds, whose numbers are checked as any other.
"""

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from fileio import atomic_write
from study.reproduce import describe, kernels

# Numbers the observations quote that no cell measures, each with where it comes from.
CONSTANTS = {
    "0.8932": "the original study's test accuracy (config.ORIGINAL_TEST_ACCURACY)",
    "0.9050": "PyTorch's test accuracy with section 7's recipe (config.WIDE_RECIPE's comment)",
    "28x28": "the size of a Fashion-MNIST image",
    "60,000": "the training images of Fashion-MNIST (mnist_reader)",
    "3x1024": "the anchor's network: three hidden layers of 1024 units (config.FRONTIER_RECIPE)",
}
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+|x\d+)?(?:\s?%)?(?![\w])")


CHECKED = ("**Observation", "**Summary")  # how the cells whose numbers are looked up begin
REPORT_TAG = "moved-numbers"  # the tag of the cells that say what moved on other kernels


def observation_cells(nb):
    """``(index, text)`` of the notebook's observation cells."""
    return [(i, cell.source) for i, cell in enumerate(nb.cells)
            if cell.cell_type == "markdown" and cell.source.lstrip().startswith(CHECKED)]


def output_text(nb):
    """Everything the code cells printed or displayed as text, in one string."""
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            texts.append(output.get("text", ""))
            texts += [output.get("data", {}).get(kind, "") for kind in ("text/plain", "text/html")]
    return "\n".join(texts)


def values_of(results):
    """Every number in a JSON document, at any depth."""
    if isinstance(results, dict):
        return [value for item in results.values() for value in values_of(item)]
    if isinstance(results, list):
        return [value for item in results for value in values_of(item)]
    if isinstance(results, bool) or not isinstance(results, int | float):
        return []
    return [float(results)]


def checked(token):
    """Whether a number as written in prose is looked up: decimals, percentages and whole numbers from 100 on."""
    plain = token.rstrip("% ").lstrip("+-").replace(",", "")
    return "%" in token or "." in plain or "x" in plain or float(plain) >= 100


def found(token, printed, values):
    """Whether the prose number ``token`` is among the ``printed`` number strings or rounds from one of ``values``
    (or from 100 times one) at the precision written."""
    plain = token.rstrip("% ").lstrip("+-")
    if plain in printed or plain.replace(",", "") in printed or plain in CONSTANTS:
        return True
    if "x" in plain:
        return False
    number = float(plain.replace(",", ""))
    mantissa = plain.lower().split("e")[0]
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if "e" in plain.lower():  # a p-value, say: the same digits in scientific notation
        return any(float(f"{abs(value):.{digits}e}") == number for value in values if math.isfinite(value))
    tolerance = 0.5 * 10 ** -digits + 1e-12
    # A share is written as a percentage, a difference of accuracies in points: with at most two decimals.
    scales = (1, 100) if digits <= 2 else (1,)
    return any(abs(scale * abs(value) - number) <= tolerance for value in values if math.isfinite(value)
               for scale in scales)


def unchecked_numbers(nb, results):
    """``(cell index, number as written, the line it stands in)`` for each number of an observation that neither
    the outputs of ``nb`` nor ``results`` (the JSON of ``log/results.json``) hold."""
    text = output_text(nb)
    printed = {match.group().rstrip("% ").lstrip("+-") for match in NUMBER.finditer(text)}
    values = values_of(results) + [float(p.replace(",", "")) for p in printed if "x" not in p.lower()]
    missing = []
    for index, source in observation_cells(nb):
        for line in source.splitlines():
            for match in NUMBER.finditer(line):
                token = match.group()
                if checked(token) and not found(token, printed, values):
                    missing.append((index, token, line.strip()))
    return missing


def recorded_kernels(log_dir):
    """``{log: blas}`` of the recipes in ``log_dir`` as committed (git's HEAD), or as they are where git has none."""
    recorded = {}
    for path in sorted(Path(log_dir).glob("*.recipe.json")):
        committed = subprocess.run(["git", "-C", str(path.parent), "show", f"HEAD:./{path.name}"],
                                   capture_output=True, text=True, check=False)
        text = committed.stdout if committed.returncode == 0 else path.read_text()
        recorded[path.name] = sorted(json.loads(text).get("blas", []), key=lambda k: json.dumps(k, sort_keys=True))
    return recorded


def section_of(nb, index):
    """The heading of the section that holds cell ``index`` (the last Markdown heading above it), or ""."""
    for cell in reversed(nb.cells[:index + 1]):
        heading = next((line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")), None)
        if cell.cell_type == "markdown" and heading:
            return heading
    return ""


def report_cells(nb, missing, total, recorded, here):
    """The banner and the appendix (Markdown cells tagged :data:`REPORT_TAG`) that say what moved on this run's
    kernels ``here`` against ``recorded``'s (``{log: blas}``): ``missing``, as :func:`unchecked_numbers` gives it,
    of ``total`` quoted numbers."""
    was = "; ".join(sorted({describe(blas) for blas in recorded.values()}))
    banner = (f"> **This run's kernels are not those that recorded the numbers the text quotes.** The text quotes "
              f"numbers recorded on {was}; this run computed on {describe(here)}. Other kernels round float32 sums "
              f"differently in their last bits, and training carries that into visible digits: "
              f"{len(missing)} of the {total} numbers the text quotes moved. The outputs show this run's numbers; ")
    banner += ("the text is the recorded run's, and the appendix at the end lists every number that moved with its "
               "sentence. The README says what reproduces where.")
    rows = "\n".join(f"| {section_of(nb, index)} | {token} | {line.replace('|', '&#124;')} |"
                      for index, token, line in missing)
    appendix = (f"## Appendix: the numbers that moved on this run's kernels\n\nRecorded on {was}; this run on "
                f"{describe(here)}. Each number below is quoted in the text and is in no output of this run: the "
                "outputs above its sentence show what this run measured.\n\n| Section | Quoted | Sentence |\n"
                "|---|---|---|\n" + rows)
    cells = [nbformat.v4.new_markdown_cell(banner), nbformat.v4.new_markdown_cell(appendix)]
    for cell in cells:
        cell.metadata["tags"] = [REPORT_TAG]
    return cells


def without_report(nb):
    """``nb`` without the cells of :func:`report_cells` that an earlier check wrote."""
    nb.cells = [cell for cell in nb.cells if REPORT_TAG not in cell.get("metadata", {}).get("tags", [])]
    return nb


def with_report(nb, cells):
    """``nb`` with the banner of ``cells`` at its top (after its title) and the appendix at its end."""
    top = 1 if nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ") else 0
    nb.cells[top:top] = cells[:1]
    nb.cells += cells[1:]
    return nb


def quoted_count(nb):
    """How many numbers the observations quote that are looked up (:func:`checked`)."""
    return sum(checked(match.group()) for _, source in observation_cells(nb) for match in NUMBER.finditer(source))


def main(argv=None, here=None):
    """The command; ``here``, the kernels of this run, is threadpoolctl's (``study.reproduce.kernels``) unless given."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("notebook", nargs="?", type=Path, default=root / "Fashion_mnist_model.ipynb")
    parser.add_argument("--results", type=Path, default=root / "log" / "results.json")
    parser.add_argument("--log-dir", type=Path, default=root / "log",
                        help="the logs whose recipes name the kernels that recorded the quoted numbers")
    args = parser.parse_args(argv)
    nb = nbformat.read(args.notebook, as_version=4)
    reported = len(nb.cells)
    nb = without_report(nb)
    reported -= len(nb.cells)  # the cells of an earlier report, gone unless this check writes them again
    missing = unchecked_numbers(nb, json.loads(args.results.read_text()))
    here = kernels() if here is None else here
    recorded = recorded_kernels(args.log_dir)
    same = all(blas == here for blas in recorded.values())  # no recipe: nothing says the kernels differ
    for index, token, line in missing:
        print(f"cell {index}: {token} is in no output and not in {args.results.name}: {line}")
    if same and missing:
        print(f"{len(missing)} numbers of the observations are not what the run measured, on the kernels that "
              f"recorded them ({describe(here)}), where every number repeats: the code changed what it computes. "
              "Update those sentences")
    elif missing:
        print(f"This run's kernels ({describe(here)}) are not those that recorded the quoted numbers "
              f"({'; '.join(sorted({describe(blas) for blas in recorded.values()}))}): {len(missing)} of "
              f"{quoted_count(nb)} quoted numbers moved; {args.notebook.name} says so at its top and lists them at its "
              "end")
        nb = with_report(nb, report_cells(nb, missing, quoted_count(nb), recorded, here))
    if reported or (missing and not same):
        text = nbformat.writes(nb)
        atomic_write(args.notebook, lambda f: f.write((text if text.endswith("\n") else text + "\n").encode()))
    return 1 if same and missing else 0


if __name__ == "__main__":
    sys.exit(main())
