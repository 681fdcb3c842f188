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
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path

import nbformat

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("notebook", nargs="?", type=Path, default=root / "Fashion_mnist_model.ipynb")
    parser.add_argument("--results", type=Path, default=root / "log" / "results.json")
    args = parser.parse_args(argv)
    missing = unchecked_numbers(nbformat.read(args.notebook, as_version=4), json.loads(args.results.read_text()))
    for index, token, line in missing:
        print(f"cell {index}: {token} is in no output and not in {args.results.name}: {line}")
    if missing:
        print(f"{len(missing)} numbers of the observations are not what the run measured: update those sentences")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
