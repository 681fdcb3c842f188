"""study.stats: exact intervals, McNemar's exact test and the spread of repeated runs."""

import math

import numpy as np
import pytest
from scipy.stats import beta, binomtest

from study import stats


@pytest.mark.parametrize("correct, n", [(8927, 10000), (0, 50), (50, 50), (7, 10)])
def test_accuracy_ci_is_the_clopper_pearson_interval(correct, n):
    low, high = stats.accuracy_ci(correct, n)
    # The exact interval from the beta quantiles, the textbook definition.
    expected_low = 0.0 if correct == 0 else beta.ppf(0.025, correct, n - correct + 1)
    expected_high = 1.0 if correct == n else beta.ppf(0.975, correct + 1, n - correct)
    assert low == pytest.approx(expected_low, abs=1e-9) and high == pytest.approx(expected_high, abs=1e-9)
    assert low <= correct / n <= high


def test_accuracy_ci_of_the_studys_test_accuracy_is_about_six_tenths_of_a_point():
    low, high = stats.accuracy_ci(8927, 10000)
    assert (round(low, 4), round(high, 4)) == (0.8865, 0.8987)
    assert stats.format_ci(low, high) == "0.8865-0.8987"


@pytest.mark.parametrize("correct, n", [(11, 10), (-1, 10), (0, 0)])
def test_accuracy_ci_refuses_impossible_counts(correct, n):
    with pytest.raises(ValueError, match="correct <= n"):
        stats.accuracy_ci(correct, n)


def test_accuracy_counts_and_interval():
    y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    pred = y.copy()
    pred[:3] = 9
    measured = stats.accuracy(y, pred)
    assert measured["accuracy"] == 0.7 and measured["correct"] == 7 and measured["images"] == 10
    assert (measured["ci_low"], measured["ci_high"]) == stats.accuracy_ci(7, 10)
    with pytest.raises(ValueError, match="one length"):
        stats.accuracy(y, pred[:5])


def test_mcnemar_counts_the_discordant_pairs_and_takes_binomtests_p_value():
    y = np.zeros(100, dtype=int)
    a, b = y.copy(), y.copy()
    a[:10] = 1  # a wrong on 0-9
    b[5:30] = 1  # b wrong on 5-29: only a right on 10-29 (20), only b right on 0-4 (5)
    result = stats.mcnemar(y, a, b)
    assert result["only_a_right"] == 20 and result["only_b_right"] == 5
    assert result["p_value"] == pytest.approx(binomtest(20, 25, 0.5).pvalue)
    assert stats.mcnemar(y, b, a)["p_value"] == pytest.approx(result["p_value"])  # two-sided: symmetric


def test_mcnemar_without_discordant_pairs_finds_no_difference():
    y = np.arange(10) % 3
    assert stats.mcnemar(y, y, y) == {"only_a_right": 0, "only_b_right": 0, "p_value": 1.0}
    with pytest.raises(ValueError, match="one length"):
        stats.mcnemar(y, y, y[:4])


def test_mcnemar_table_and_its_sentence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=2000)
    reference = np.where(rng.random(2000) < 0.80, y, (y + 1) % 10)
    better = np.where(rng.random(2000) < 0.5, y, reference)  # right on about half of the reference's errors
    same = reference.copy()
    same[:4] = (y[:4] + 1) % 10  # a handful of images apart: no evidence either way
    worse = np.where(rng.random(2000) < 0.3, (y + 2) % 10, reference)
    table = stats.mcnemar_table(y, {"ref": reference, "better": better, "same": same, "worse": worse}, "ref")
    assert list(table["model"]) == ["better", "same", "worse"]
    by_model = table.set_index("model")
    assert by_model.loc["better", "significant"] and by_model.loc["better", "difference"] > 0
    assert by_model.loc["worse", "significant"] and by_model.loc["worse", "difference"] < 0
    assert not by_model.loc["same", "significant"] and by_model.loc["same", "p_value"] > 0.05
    assert by_model.loc["better", "only_reference_right"] == 0
    assert by_model.loc["better", "test_accuracy"] == pytest.approx(np.mean(better == y))
    assert stats.significance_sentence(table, "the reference") == (
        "At the 0.05 level (McNemar's exact test), better is more accurate than the reference; worse is less "
        "accurate than the reference; same does not differ significantly from the reference.")
    with pytest.raises(KeyError, match="reference model"):
        stats.mcnemar_table(y, {"a": reference}, "ref")


def test_significance_sentence_names_several_models_together():
    table = stats.mcnemar_table(np.zeros(4, dtype=int), {"r": np.zeros(4, dtype=int), "a": np.zeros(4, dtype=int),
                                                        "b": np.zeros(4, dtype=int), "c": np.zeros(4, dtype=int)},
                                "r")
    assert stats.significance_sentence(table, "r").endswith("a, b and c do not differ significantly from r.")


def test_spread_and_position():
    values = [0.890, 0.892, 0.894, 0.896, 0.898]
    summary = stats.spread(values)
    assert summary["mean"] == pytest.approx(0.894) and summary["std"] == pytest.approx(np.std(values, ddof=1))
    assert (summary["min"], summary["max"], summary["n"]) == (0.890, 0.898, 5)
    where = stats.position(0.8927, values)
    assert where["z"] == pytest.approx((0.8927 - 0.894) / np.std(values, ddof=1))
    assert (where["below"], where["above"]) == (2, 3)
    assert stats.position(0.9, [0.5, 0.5])["z"] == math.inf
    assert stats.position(0.5, [0.5, 0.5])["z"] == 0.0
    with pytest.raises(ValueError, match="at least two"):
        stats.spread([0.9])
