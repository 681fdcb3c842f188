"""What the second notebook, ``How_far_can_an_MLP_go.ipynb`` (sections 7, 9 and 10), writes to ``log/results.json``.

The results file holds both notebooks' parts side by side: ``Fashion_mnist_model.ipynb`` writes the brief's study
(``study_results.measured``: the grid, the test, the seeds...), this notebook the keys of :data:`KEYS`.
``report.save_results`` replaces only the keys it is given and keeps the other notebook's, so that either notebook
can run alone, and ``study.report`` renders the README's results from both.
"""

from study import stats

NOTEBOOK = "How_far_can_an_MLP_go.ipynb"
SECTIONS = (7, 9, 10)  # the study's sections this notebook holds; Fashion_mnist_model.ipynb the others
KEYS = ("beyond", "candidates", "ablation", "budget_rule", "validation", "frontier", "finals", "how_far")


def results(comparison, beyond_test, candidates, ablation, budget_rule, validation, frontier, finals, wall_s,
            mcnemar=None, sections=None, teacher=None):
    """This notebook's part of ``log/results.json``: ``comparison``, section 7's contenders on the test set
    (``beyond.comparison_row``), ``beyond_test`` the ``(accuracy, loss, images)`` of its saved wide network and
    ``mcnemar`` the contenders against the seed grid's best (``stats.mcnemar_table``); ``candidates``
    (``beyond.candidate_table``), ``ablation`` (``{"table", "mcnemar"}``), ``budget_rule`` (``budget.budget_rule``);
    ``validation``, every win the text claims, judged on the validation images (``wins.paired_verdicts``);
    ``frontier`` and ``finals``, section 9's first round and finals (``frontier.results``, ``finals.results``);
    ``wall_s``, the wall times of section 7 (``"beyond"``) and of the whole notebook (``"notebook"``), and
    ``sections`` each section's (``timing.Sections.times``); ``teacher``, section 10's (``teacher.results``)."""
    accuracy, loss, images = beyond_test
    beyond = {"table": comparison, "test_accuracy": accuracy, "test_loss": loss,
              "test_ci": stats.accuracy_ci(round(accuracy * images), images), "wall_time_s": wall_s["beyond"]}
    if mcnemar is not None:
        beyond["mcnemar"] = mcnemar
    return {"beyond": beyond, "candidates": candidates,
            "ablation": {"table": ablation["table"], "mcnemar": ablation["mcnemar"]}, "budget_rule": budget_rule,
            "validation": validation, "frontier": frontier, "finals": finals,
            "how_far": {"notebook_wall_time_s": wall_s["notebook"], "sections_wall_time_s": dict(sections or {})},
            **({"teacher": teacher} if teacher is not None else {})}
