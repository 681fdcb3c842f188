"""The uncertainty of the study's numbers: exact confidence intervals of an accuracy, McNemar's exact test of two
models on the same images, and the spread of repeated runs.

Both tests come from SciPy's ``binomtest`` rather than being derived here:

- an accuracy of ``k`` correct out of ``n`` images is a binomial proportion, and its interval is the exact
  Clopper-Pearson one, ``binomtest(k, n).proportion_ci(0.95)`` (about +-0.6 points on 10,000 images at 0.89);
- two models measured on the same test images differ only on the images that one gets right and the other wrong:
  ``b`` images only the first gets right, ``c`` only the second. Under the hypothesis that both are equally accurate
  each of these discordant images is a fair coin, so McNemar's exact p-value is the two-sided binomial test
  ``binomtest(b, b + c, 0.5)``. Dietterich (1998) found it the test of acceptable type I error for models trained
  once, which is the case of section 7.
"""

import math

import numpy as np
import pandas as pd
from scipy.stats import binomtest

LEVEL = 0.95  # of every confidence interval of the study
ALPHA = 0.05  # of every test of the study


def accuracy_ci(correct, n, level=LEVEL):
    """The exact (Clopper-Pearson) confidence interval ``(low, high)`` of an accuracy of ``correct`` out of ``n``."""
    correct, n = int(correct), int(n)
    if n < 1 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n >= 1, got correct={correct}, n={n}")
    interval = binomtest(correct, n).proportion_ci(confidence_level=level, method="exact")
    return float(interval.low), float(interval.high)


def accuracy(y_true, y_pred, level=LEVEL):
    """The accuracy of ``y_pred`` on ``y_true`` with its exact interval: ``{"accuracy", "ci_low", "ci_high",
    "correct", "images"}``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be two label vectors of one length, got {y_true.shape} and "
                         f"{y_pred.shape}")
    correct, n = int(np.count_nonzero(y_true == y_pred)), len(y_true)
    low, high = accuracy_ci(correct, n, level)
    return {"accuracy": correct / n, "ci_low": low, "ci_high": high, "correct": correct, "images": n}


def format_ci(low, high):
    """``"0.8865-0.8987"``, an interval as the tables print it."""
    return f"{low:.4f}-{high:.4f}"


def mcnemar(y_true, pred_a, pred_b):
    """McNemar's exact test of two models' predictions on the same images.

    Returns ``{"only_a_right": b, "only_b_right": c, "p_value"}``: ``p_value`` is two-sided, and 1 when the two
    models are right on exactly the same images (no discordant pair, no evidence of a difference).
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if not y_true.shape == pred_a.shape == pred_b.shape or y_true.ndim != 1:
        raise ValueError(f"the labels and both predictions must be vectors of one length, got {y_true.shape}, "
                         f"{pred_a.shape} and {pred_b.shape}")
    right_a, right_b = pred_a == y_true, pred_b == y_true
    b, c = int(np.count_nonzero(right_a & ~right_b)), int(np.count_nonzero(~right_a & right_b))
    p_value = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return {"only_a_right": b, "only_b_right": c, "p_value": float(p_value)}


def agreement_table(y_true, pred_a, pred_b, names=("a", "b")):
    """The 2x2 table behind McNemar's test: how many images both models get right, only one of them, or neither;
    rows are the first model (``names[0]``) right or wrong, columns the second."""
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    right_a, right_b = pred_a == y_true, pred_b == y_true
    counts = [[int(np.count_nonzero(a & b)) for b in (right_b, ~right_b)] for a in (right_a, ~right_a)]
    return pd.DataFrame(counts, index=[f"{names[0]} right", f"{names[0]} wrong"],
                        columns=[f"{names[1]} right", f"{names[1]} wrong"])


def mcnemar_table(y_true, predictions, reference, alpha=ALPHA):
    """Every model of ``predictions`` (``{name: predicted labels}``) against the ``reference`` one on the same
    images: one row per other model with its accuracy and interval, the discordant pairs, McNemar's exact p-value
    and whether the difference is significant at ``alpha``."""
    if reference not in predictions:
        raise KeyError(f"the reference model {reference!r} is not among the predictions {list(predictions)}")
    rows = []
    for name, pred in predictions.items():
        if name == reference:
            continue
        measured, test = accuracy(y_true, pred), mcnemar(y_true, predictions[reference], pred)
        rows.append({"model": name, "test_accuracy": measured["accuracy"], "ci_low": measured["ci_low"],
                     "ci_high": measured["ci_high"],
                     "difference": measured["accuracy"] - accuracy(y_true, predictions[reference])["accuracy"],
                     "only_reference_right": test["only_a_right"], "only_model_right": test["only_b_right"],
                     "p_value": test["p_value"], "significant": test["p_value"] < alpha})
    return pd.DataFrame(rows, columns=["model", "test_accuracy", "ci_low", "ci_high", "difference",
                                       "only_reference_right", "only_model_right", "p_value", "significant"])


def significance_sentence(table, reference, alpha=ALPHA):
    """What a :func:`mcnemar_table` says, in one sentence: which models differ from ``reference`` (the reference
    model as the sentence names it, e.g. ``"the seed grid's best"``) at ``alpha``."""
    better = list(table.loc[table["significant"] & (table["difference"] > 0), "model"])
    worse = list(table.loc[table["significant"] & (table["difference"] < 0), "model"])
    same = list(table.loc[~table["significant"], "model"])
    parts = []
    if better:
        parts.append(f"{_names(better)} {'is' if len(better) == 1 else 'are'} more accurate than {reference}")
    if worse:
        parts.append(f"{_names(worse)} {'is' if len(worse) == 1 else 'are'} less accurate than {reference}")
    if same:
        parts.append(f"{_names(same)} {'does' if len(same) == 1 else 'do'} not differ significantly from "
                     f"{reference}")
    if not parts:
        return f"No model was compared with {reference}."
    text = "; ".join(parts)
    return f"At the {alpha:g} level (McNemar's exact test), {text}."


def _names(names):
    """``["a"]`` -> ``"a"``, ``["a", "b", "c"]`` -> ``"a, b and c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# -- repeated runs ---------------------------------------------------------------------------------------------


def spread(values):
    """Mean, standard deviation (sample, ``ddof=1``), minimum and maximum of repeated measurements."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"a spread needs at least two values, got {values.tolist()}")
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)), "min": float(values.min()),
            "max": float(values.max()), "n": len(values)}


def position(value, values):
    """Where ``value`` falls among repeated measurements ``values``: ``{"value", "z"}`` with ``z`` its distance from
    their mean in standard deviations, and ``"below"``/``"above"``, how many of them are lower/higher."""
    summary = spread(values)
    values = np.asarray(values, dtype=np.float64)
    gap, std = value - summary["mean"], summary["std"]
    # Identical runs (std 0): a value off them is infinitely far.
    z = gap / std if std > 0 else (math.copysign(math.inf, gap) if gap else 0.0)
    return {"value": float(value), "z": float(z), "below": int(np.count_nonzero(values < value)),
            "above": int(np.count_nonzero(values > value))}
