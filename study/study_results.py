"""The first notebook's part of ``log/results.json``: what ``Fashion_mnist_model.ipynb`` measures, written into the
one results file that ``study.report`` copies into the README.

Two notebooks share that file. This one writes the keys of :data:`STUDY_KEYS` (the grid, the chosen model and its
test, the baseline, the other seeds) as :func:`measured` builds them; ``How_far_can_an_MLP_go.ipynb`` writes its own
(``study.how_far``). ``report.save_results`` writes either part, keeping the other's.
"""

from study import beyond, config, grid, runs, stats

NOTEBOOK = "Fashion_mnist_model.ipynb"
SECTIONS = (1, 2, 3, 4, 5, 6, 8)  # the study's sections this notebook holds; How_far_can_an_MLP_go.ipynb the others
STUDY_KEYS = ("quick", "runs_trained", "test", "best", "top5", "grid", "final_training", "notebook_wall_time_s",
              "sections_wall_time_s", "seeds", "baseline")


def measured(cfg, grid_log, trained_now, n_jobs, final, test, baseline, versus_baseline, seeds, wall_s, sections):
    """This notebook's results, as ``{key of STUDY_KEYS: value}``.

    ``grid_log`` is the grid's log, of which ``trained_now`` runs trained in this execution on ``n_jobs`` processes;
    ``final`` the model retrained on the grid's best settings; ``test`` its ``(accuracy, loss, images)`` on the test
    set; ``baseline`` the softmax regression chosen on validation with ``(test accuracy, interval)`` beside it, as
    ``(model, measured)`` (``measured`` as ``stats.accuracy`` returns it), and ``versus_baseline`` the
    ``stats.mcnemar_table`` of the MLP against it; ``seeds`` ``{"table", "summary"}`` of the other seeds;
    ``wall_s`` the wall times in seconds of ``"grid"``, ``"final_training"``, ``"seeds"`` and the whole
    ``"notebook"``; ``sections`` each section's (``timing.Sections.times``).
    """
    top5 = grid.top_k(grid_log, k=5)
    best = config.settings_from_row(top5.iloc[0])
    accuracy, loss, images = test
    model, found = baseline
    return {
        "quick": cfg.quick,
        "runs_trained": runs.runs_started,
        "test": {"accuracy": accuracy, "loss": loss, "images": images,
                 "ci": stats.accuracy_ci(round(accuracy * images), images)},
        "best": {**best, "best_val_acc": top5.loc[0, "best_val_acc"], "best_val_loss": top5.loc[0, "best_val_loss"]},
        "top5": top5,
        "grid": {"runs": len(grid_log), "trained_now": trained_now, "n_jobs": n_jobs, "wall_time_s": wall_s["grid"],
                 "sum_train_time_s": grid_log["train_time_s"].sum()},
        "final_training": {"wall_time_s": wall_s["final_training"], "best_val_acc": final.best_val_acc,
                           "best_iteration": final.best_iteration},
        "notebook_wall_time_s": wall_s["notebook"],
        "sections_wall_time_s": dict(sections),
        "seeds": dict(seeds, original_test_accuracy=config.ORIGINAL_TEST_ACCURACY, wall_time_s=wall_s["seeds"]),
        "baseline": {"settings": beyond.describe(model), "val_accuracy": model.best_val_acc,
                     "test_accuracy": found["accuracy"], "test_ci": (found["ci_low"], found["ci_high"]),
                     "mcnemar": versus_baseline},
    }

