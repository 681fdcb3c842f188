"""The study's one rule for "better" between runs, on the validation images: McNemar's exact paired test.

Two runs scored on the same validation images differ only on the images that one of them gets right and the other
wrong. :func:`paired_verdicts` tests each run against a reference on those images (``stats.mcnemar_table``) and
calls the difference a win (``"better"``) or a loss (``"worse"``) only when the test sees it (p < ``stats.ALPHA``);
a smaller lead is a ``"tie"``. Choosing by the higher validation accuracy (``runs.ranked``) still picks one run
among tied ones: the verdict says whether the text may call that pick a win.

The second notebook (``How_far_can_an_MLP_go.ipynb``) prints these verdicts beside every choice it calls a win:
section 7's contenders against the seed recipe's model, section 9's candidates against the recipe they change, and
each member that joins the ensemble.
"""

from itertools import pairwise

import numpy as np
import pandas as pd

from study import stats

VERDICT_COLUMNS = ["model", "reference", "val_accuracy", "lead_images", "only_reference_right", "only_model_right",
                   "p_value", "verdict"]


def paired_verdicts(y_val, predictions, reference):
    """Each run of ``predictions`` (``{name: predicted labels}`` on the validation images ``y_val``) but
    ``reference`` against ``reference``: its validation accuracy, its lead in images (images only it gets right
    minus images only the reference gets right), the discordant counts, McNemar's exact p-value and the verdict,
    ``"better"``, ``"worse"`` or ``"tie"``."""
    table = stats.mcnemar_table(y_val, predictions, reference)
    lead = table["only_model_right"] - table["only_reference_right"]
    verdict = np.where(~table["significant"].astype(bool), "tie", np.where(lead > 0, "better", "worse"))
    return pd.DataFrame({"model": table["model"], "reference": reference, "val_accuracy": table["test_accuracy"],
                         "lead_images": lead, "only_reference_right": table["only_reference_right"],
                         "only_model_right": table["only_model_right"], "p_value": table["p_value"],
                         "verdict": verdict}, columns=VERDICT_COLUMNS)


def describe_verdicts(table):
    """One line per row of :func:`paired_verdicts`: the lead in validation images, the p-value and the verdict."""
    return "\n".join(f"{row.model} against {row.reference}: {row.lead_images:+d} validation images "
                     f"({row.only_model_right} only it gets right, {row.only_reference_right} only the reference), "
                     f"p {row.p_value:.2g}: {'a tie' if row.verdict == 'tie' else row.verdict}"
                     for row in table.itertuples(index=False))


def growing_predictions(probabilities, names):
    """``{name: predicted labels}`` of the ensembles that a greedy selection grows, from each candidate's
    validation ``probabilities`` (``{name: (N, C)}``) and the ``names`` it chose in order: the first member alone,
    then the first two averaged, ..., each keyed by the names joined with " + "."""
    return {" + ".join(names[:k]): np.mean([probabilities[n] for n in names[:k]], axis=0).argmax(axis=1)
            for k in range(1, len(names) + 1)}


def steps_against_previous(y_val, grown):
    """:func:`paired_verdicts` of each ensemble of ``grown`` (:func:`growing_predictions`) against the one before
    it: did the member that joined make it better, or is the rise a tie?"""
    steps = [paired_verdicts(y_val, {before: grown[before], after: grown[after]}, before)
             for before, after in pairwise(grown)]
    return pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(columns=VERDICT_COLUMNS)  # one member
