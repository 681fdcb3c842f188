"""The README's results section as markdown: what ``python -m study.report`` writes between ``<!-- results:start -->``
and ``<!-- results:end -->``, made from ``log/results.json`` (read and checked by ``study.report``), the grid's log,
the budgets' log and the benchmarks' paragraphs: the top five runs of the grid, the test accuracy with its exact 95%
interval, the learning-rate follow-up, successive halving beside the grid, section 7's comparison with McNemar's
tests, the budgets, section 8's seeds, section 9's frontier, the wall times, the machine, the benchmarks and a few
figures. Parts that ``results.json`` does not hold (one written before they existed) are left out.
"""

import pandas as pd

from study import budget, followup, grid, how_far, stats, study_results
from study.benches import duration, machine_line, table

# (file in figures/, caption); only those that exist are linked.
FIGURES = [
    ("grid_results.png", "Best validation accuracy of the grid search against the learning rate"),
    ("best_model_history.png", "Training curves of the final model"),
    ("confusion_matrix.png", "Confusion matrix on the test set"),
    ("first_layer_weight_changes.png", "What training changed in the first-layer weights"),
    ("activation_heatmap.png", "First-hidden-layer activations of ten test images of each class"),
    ("beyond_confusion_matrices.png", "Confusion matrices of the seed grid's best model and of section 7's"),
    ("frontier_candidates.png", "Validation curves of section 9's candidates, both rounds"),
]


def top_five_table(log):
    top = grid.top_k(log, k=5)
    rows = [(rank, r.layers, f"{r.lr:g}", f"{r.L2_lambda:g}", f"{r.best_val_acc:.4f}",
             f"{r.best_val_loss:.4f}", int(r.best_iteration), f"{r.train_time_s:.0f}")
            for rank, r in enumerate(top.itertuples(index=False), start=1)]
    header = ["rank", "layers", "learning rate", "L2", "val accuracy", "val loss", "best iteration", "train time (s)"]
    return table(header, rows)


def halving_section(halving, grid, best_val_acc):
    layers = "-".join(str(n) for n in halving["settings"]["layers"])
    gap = 100 * (best_val_acc - halving["best_val_acc"])
    epochs = halving["grid_epochs"] // grid["runs"]
    return (f"**Successive halving** over the same {grid['runs']} settings ({halving['rungs']} rungs) picks layers "
            f"{layers}, learning rate {halving['settings']['lr']:g}, L2 {halving['settings']['L2_lambda']:g}, whose "
            f"{epochs}-epoch validation accuracy is {halving['best_val_acc']:.4f}, {gap:.2f} points below the grid's "
            "best, "
            f"for {halving['epochs']} epochs instead of {halving['grid_epochs']} "
            f"({halving['epochs'] / halving['grid_epochs']:.0%})"
            + (f" and {duration(halving['wall_time_s'])} instead of {duration(grid['wall_time_s'])}."
               if grid.get("trained_now", grid["runs"]) else "."))


def _with_ci(accuracy, ci):
    """``"0.8927 (95% CI 0.8865-0.8987)"``, or the accuracy alone when no interval was recorded."""
    return f"{accuracy:.4f}" + (f" (95% CI {stats.format_ci(*ci)})" if ci else "")


def _against_target(entry):
    """A test accuracy judged against its target (``finals.against_target``'s entry), in bold with its interval."""
    return (f"**{_with_ci(entry['test_acc'], (entry['ci_low'], entry['ci_high']))}**, "
            f"{'at or above' if entry['reached'] else 'below'} its target of {entry['target']:g}")


def mcnemar_section(rows, reference, images):
    comparisons = pd.DataFrame(rows)
    lines = [(r["model"], _with_ci(r["test_accuracy"], (r["ci_low"], r["ci_high"])), f"{100 * r['difference']:+.2f}",
              r["only_reference_right"], r["only_model_right"], f"{r['p_value']:.3g}",
              "yes" if r["significant"] else "no") for r in rows]
    header = ["model", "test accuracy", "difference (points)", "only the reference right", "only the model right",
              "p-value", f"significant at {stats.ALPHA:g}"]
    return (f"Each contender against the {reference} on the same {images:,} test images (McNemar's exact test on "
            f"the images that only one of the two gets right):\n\n{table(header, lines)}\n\n"
            f"{stats.significance_sentence(comparisons, f'the {reference}')}")


def beyond_section(beyond, images=10000):
    with_ci = all("test_ci_low" in r for r in beyond["table"])
    rows = [(r["model"], r["settings"], f"{r['val_accuracy']:.4f}", f"{r['test_accuracy']:.4f}",
             *([stats.format_ci(r["test_ci_low"], r["test_ci_high"])] if with_ci else []),
             f"{r['test_loss']:.4f}", r["epochs"], duration(r["train_time_s"])) for r in beyond["table"]]
    header = ["model", "settings", "val accuracy", "test accuracy", *(["95% CI"] if with_ci else []), "test loss",
              "epochs", "train time"]
    text = (f"**Beyond the original study** (section 7, in `How_far_can_an_MLP_go.ipynb`; learning rates and (c)'s "
            "epochs chosen on the validation set, the test set measured afterwards; (c)'s recipe itself was chosen "
            f"on a test number, that of an earlier PyTorch run):\n\n{table(header, rows)}")
    if beyond.get("mcnemar"):
        text += "\n\n" + mcnemar_section(beyond["mcnemar"], beyond["table"][0]["model"], images)
    return (f"{text}\n\n`weights/beyond_model.npz`, loaded into a fresh `MLP`: test accuracy "
            f"**{_with_ci(beyond['test_accuracy'], beyond.get('test_ci'))}**, cross-entropy loss "
            f"{beyond['test_loss']:.4f}.")


def budget_section(log):
    """How section 7's epochs were chosen: the runs of ``study.budget``'s log and the rule's choice (on the mean of
    each budget's seeds when it has several, ``budget.budget_rule``)."""
    rule = budget.budget_rule(log)
    seeded = int(log["seed"].nunique()) > 1
    rows = [((r["max_epoch"], r["seed"]) if seeded else (r["max_epoch"],))
            + ("diverged" if r["diverged"] else f"{r['best_val_acc']:.4f}",
               "" if r["diverged"] else f"{r['best_val_loss']:.4f}", duration(r["train_time_s"]))
            for r in log.to_dict("records")]
    if not seeded:
        return (f"The wide network trains **{rule['chosen']} epochs**, the fewest whose validation accuracy is at "
                f"least {rule['threshold']:.4f}, one standard error below the best budget's (`make budget`, "
                "`log/wide_budget.csv`; each budget is a run of its own cosine schedule, with one BLAS thread):\n\n"
                + table(["epochs", "val accuracy", "val loss", "train time"], rows))
    shorter = (f"; {rule['shorter']} epochs fall {rule['shorter_shortfall_images']:.1f} short"
               if rule["shorter"] is not None else "")
    return (f"The wide network trains **{rule['chosen']} epochs**, the fewest whose validation accuracy, the mean of "
            f"its runs with {log['seed'].nunique()} seeds, is at least {rule['threshold']:.4f}, one standard error "
            f"({rule['se']:.4f}: the binomial error on {rule['val_images']:,} images and the spread between seeds) "
            f"below the best budget's mean ({rule['best_budget']} epochs, {rule['best_mean']:.4f}); it clears the "
            f"threshold by {rule['margin_images']:.1f} validation images{shorter} (`make budget`, "
            "`log/wide_budget.csv`; each budget is a run of its own cosine schedule, with one BLAS thread):\n\n"
            + table(["epochs", "seed", "val accuracy", "val loss", "train time"], rows))


def lr_followup_section(found, best):
    """The grid's runs of the best architecture and L2 beside the follow-up's, and the notebook's verdict."""
    rows = [(f"{r['lr']:g}", "diverged" if r["diverged"] else f"{r['best_val_acc']:.4f}",
             "" if r["diverged"] else f"{r['best_val_loss']:.4f}", r["source"]) for r in found["table"]]
    followup_table = table(["learning rate", "val accuracy", "val loss", "run of"], rows)
    layers = "-".join(str(n) for n in best["layers"])
    return (f"**Learning rates beyond the grid's largest** (section 3's follow-up; validation only, layers {layers} "
            f"and L2 {best['L2_lambda']:g} with the grid's recipe):\n\n{followup_table}\n\n"
            f"{followup.describe_verdict(found['verdict'], best['layers'], best['L2_lambda'])} The model tested "
            "above stays the grid's choice.")


def seeds_section(seeds):
    summary, rows = seeds["summary"], seeds["table"]
    val, spread = summary["val"], summary["test"]
    seeds_table = table(["seed", "val accuracy", "test accuracy", "95% CI"],
                   [(r["seed"], f"{r['best_val_acc']:.4f}", f"{r['test_acc']:.4f}",
                     stats.format_ci(r["test_ci_low"], r["test_ci_high"])) for r in rows])
    single, original = summary["single_run"], summary.get("original_test")

    def where(found):
        distance = "" if found["z"] is None else f"{found['z']:+.1f} standard deviations from the seeds' mean, "
        return f"{distance}above {found['below']} and below {found['above']} of the {spread['n']} runs"

    text = (f"**The chosen settings with {len(rows)} other seeds** (section 8; the seed draws the initial weights "
            f"and the order of the batches, the split stays fixed):\n\n{seeds_table}\n\n"
            f"Validation accuracy {val['mean']:.4f} +- {val['std']:.4f}, test accuracy {spread['mean']:.4f} +- "
            f"{spread['std']:.4f} (mean +- standard deviation over the {spread['n']} runs; test from "
            f"{spread['min']:.4f} to {spread['max']:.4f}). The grid's own run (seed {single['seed']}), "
            f"{single['test']['value']:.4f} on the test set, lies {where(single['test'])}")
    if original:
        text += f"; the original study's {original['value']:.4f} lies {where(original)}"
    if summary.get("diverged"):
        text += f". {summary['diverged']} of the runs diverged and are left out of the spread"
    return text + "."


def frontier_section(frontier, images=10000):
    """Section 9: the candidates, the ensemble chosen, each final model's test accuracy against the targets, and
    McNemar's tests."""
    candidates = candidate_rows(frontier["candidates"])
    chosen = next(r for r in frontier["ensemble_choices"] if r["chosen"])
    tested = [(r["model"], "" if r["val_acc"] is None else f"{r['val_acc']:.4f}", f"{r['test_acc']:.4f}",
               stats.format_ci(r["ci_low"], r["ci_high"]), f"{r['test_loss']:.4f}", duration(r["train_time_s"]))
              for r in frontier["test"]]
    found = frontier["summary"]
    single, spread, ensemble = found["single"], found["members_test"], found["ensemble"]

    parts = [
        f"**How far can an MLP go?** (section 9's first round: {frontier['recipe']}; every choice made on the "
        "validation set, the test set measured once per final model: the study's first look at it). The "
        "candidates:\n\n"
        + table(CANDIDATE_HEADER, candidates),
        f"The ensemble chosen on validation: the first {chosen['members']} members, flip averaging "
        f"{'on' if chosen['flip_average'] else 'off'} (validation accuracy {chosen['val_acc']:.4f}). On the test "
        f"set:\n\n" + table(["model", "val accuracy", "test accuracy", "95% CI", "test loss", "train time"], tested),
        f"The single MLP chosen on validation ({single['model']}): {_against_target(single)}; the best published "
        f"pure-MLP result is {found['published']:.4f}. The {spread['n']} members: {spread['mean']:.4f} +- "
        f"{spread['std']:.4f} ({spread['min']:.4f} to {spread['max']:.4f}). The ensemble: "
        f"{_against_target(ensemble)}.",
    ]
    for reference in dict.fromkeys(r["reference"] for r in frontier["mcnemar"]):
        parts.append(mcnemar_section([r for r in frontier["mcnemar"] if r["reference"] == reference], reference,
                                     images))
    return "\n\n".join(parts)


CANDIDATE_HEADER = ["candidate", "round", "changes to the recipe", "val accuracy", "val loss", "epochs", "train time"]


def candidate_rows(candidates):
    return [(r["candidate"] + (" (chosen)" if r["chosen"] else ""), r["round"], r["changes"],
             f"{r['best_val_acc']:.4f}", f"{r['best_val_loss']:.4f}", r["epochs"], duration(r["train_time_s"]))
            for r in candidates]


def finals_section(finals, images=10000, bonferroni=stats.ALPHA / 10):
    """Section 9's second round: the candidates of both rounds, the choices made on validation, the final models on
    the test set against the targets, McNemar's tests and the classes that changed below ``bonferroni``."""
    steps = [s for s in finals["member_steps"] if s["flip_average"] == finals["flip_average"]]
    students = ", ".join(f"T = {r['temperature']:g}: {r['best_val_acc']:.4f}" for r in finals["students"])
    tested = [(r["model"], f"{r['test_acc']:.4f}", stats.format_ci(r["ci_low"], r["ci_high"]), f"{r['test_loss']:.4f}",
               r["epochs"] if r["epochs"] is not None else "", f"{r['train_rows']:,}", duration(r["train_time_s"]))
              for r in finals["test"]]
    found = finals["summary"]
    single, seeds, ensemble = found["single"], found["seeds"], found["ensemble"]
    evidence = finals["epochs"]
    changed = [f"{r['class']} ({100 * r['change']:+.1f} points, p {r['p_value']:.2g})"
               for r in finals["class_changes"] if r["p_value"] < bonferroni]

    parts = [
        "**Past the frontier** (section 9's second round, started after the first round missed its targets on the "
        "test set: its test numbers are a **second look at the test set**. Its choices were made on the validation "
        f"set, then the final models trained on all {finals['test'][0]['train_rows']:,} training images, the "
        "validation rows included, and measured once on the test set). The candidates of both rounds, each on the "
        "split's training rows:\n\n"
        + table(CANDIDATE_HEADER, candidate_rows(finals["candidates"])),
        f"Chosen on validation: the recipe of {finals['chosen']} (its best validation check at epoch "
        f"{evidence['best_epoch']} of {evidence['epochs']}, {evidence['best_val_acc']:.4f}, its last "
        f"{evidence['last_val_acc']:.4f}: the finals keep their last weights); the ensemble's members by greedy "
        f"forward selection, {', '.join(s['added'] for s in steps)} (validation accuracy {steps[-1]['val_acc']:.4f}, "
        f"flip averaging {'on' if finals['flip_average'] else 'off'}); distillation's temperature "
        f"{finals['temperature']:g} among {students}. On the test set:\n\n"
        + table(["model", "test accuracy", "95% CI", "test loss", "epochs", "training images", "train time"], tested),
        f"The distilled MLP: {_against_target(single)}; the best published pure-MLP result is "
        f"{found['published']:.4f}. The recipe's {seeds['n']} seeds: mean {seeds['mean']:.4f} +- {seeds['std']:.4f} "
        f"({seeds['min']:.4f} to {seeds['max']:.4f}), {'at or above' if seeds['reached'] else 'below'} "
        f"{seeds['target']:g}. The ensemble of {ensemble['members']} recipes: {_against_target(ensemble)}.",
    ]
    job = finals["job"]
    parts.append(f"`make frontier` trained section 9's {job['runs']} runs, both rounds and the finals, in "
                 f"{duration(job['train_time_s'])} of training, two at a time on 2 cores: about "
                 f"{duration(job['train_time_s'] / 2)} of wall time.")
    for reference in dict.fromkeys(r["reference"] for r in finals["mcnemar"]):
        parts.append(mcnemar_section([r for r in finals["mcnemar"] if r["reference"] == reference], reference,
                                     images))
    parts.append(f"Classes that changed from section 7's wide network to the distilled MLP below the Bonferroni "
                 f"threshold of {bonferroni:g}: {', '.join(changed) or 'none'}.")
    return "\n\n".join(parts)


def validation_section(rows):
    """The choices that the second notebook weighs as wins, each judged by McNemar's test on the validation images
    (``study.wins``): the lead in images, the p-value and the verdict."""
    lines = [(r["model"], r["reference"], f"{r['val_accuracy']:.4f}", f"{r['lead_images']:+d}", f"{r['p_value']:.2g}",
              r["verdict"]) for r in rows]
    return ("**Wins, judged on the 6,000 validation images** (McNemar's exact test; a lead it cannot see at "
            f"{stats.ALPHA:g} is a tie): section 7's contenders, section 9's candidates against the recipe they "
            "change, and each member that joined the ensemble.\n\n"
            + table(["model", "against", "val accuracy", "lead (images)", "p-value", "verdict"], lines))


def glance_rows(results):
    """The study's models at a glance, from ``results`` (``log/results.json``): ``(model, test accuracy, 95% CI,
    (notebook, section))`` for the first notebook's baseline, seed recipe and other seeds (their mean +- standard
    deviation and range), and the second's wide network (section 7) and single MLPs and ensembles (section 9), each
    that the results hold."""
    rows = []
    if "baseline" in results:
        base = results["baseline"]
        rows.append(("softmax regression (baseline)", f"{base['test_accuracy']:.4f}",
                     stats.format_ci(*base["test_ci"]), 2))
    test = results["test"]
    rows.append(("the seed recipe, tuned by the grid", f"{test['accuracy']:.4f}", stats.format_ci(*test["ci"]),
                 5))
    if "beyond" in results:
        beyond = results["beyond"]
        rows.append(("wide network with dropout and AdamW (recipe chosen on a test number)",
                     f"{beyond['test_accuracy']:.4f}", stats.format_ci(*beyond["test_ci"]), 7))
    if "seeds" in results:
        spread = results["seeds"]["summary"]["test"]
        rows.append((f"the seed recipe, {spread['n']} other seeds", f"{spread['mean']:.4f} +- {spread['std']:.4f}",
                     f"{spread['min']:.4f} to {spread['max']:.4f} (range)", 8))
    if "frontier" in results:
        found = results["frontier"]["summary"]
        for name, entry in (("3x1024 with batch norm, first round (single MLP)", found["single"]),
                            ("first round, ensemble of seeds", found["ensemble"])):
            rows.append((name, f"{entry['test_acc']:.4f}", stats.format_ci(entry["ci_low"], entry["ci_high"]),
                         9))
    if "finals" in results:  # started after the first round missed its targets: a second look at the test set
        found = results["finals"]["summary"]
        seeds = found["seeds"]
        rows.append(("second round (a second look at the test set): distilled single MLP",
                     f"{found['single']['test_acc']:.4f}",
                     stats.format_ci(found["single"]["ci_low"], found["single"]["ci_high"]), 9))
        rows.append((f"second round: its recipe, {seeds['n']} seeds", f"{seeds['mean']:.4f} +- {seeds['std']:.4f}",
                     f"{seeds['min']:.4f} to {seeds['max']:.4f} (range)", 9))
        rows.append((f"second round: ensemble of {found['ensemble']['members']} recipes",
                     f"{found['ensemble']['test_acc']:.4f}",
                     stats.format_ci(found["ensemble"]["ci_low"], found["ensemble"]["ci_high"]), 9))
    return rows


def teacher_section(part):
    """Section 10 (``study.teacher.results``): how far its job had come, or, once it has finished, the single test
    read against the pre-registered targets."""
    targets = part["targets"]
    text = (f"**Section 10, a convolutional teacher** (pre-registered in `How_far_can_an_MLP_go.ipynb` before any of "
            f"its runs: a single pure MLP at {targets['single']:g} or more on the test set, an ensemble at "
            f"{targets['ensemble']:g} or more; the test set read once, the study's third look): ")
    if not part["finished"]:
        return text + (f"its job (`make teacher`) had {part['done']} of {part['runs']} runs recorded when the second "
                       "notebook last ran; no choice is final and the test set is unread until it has finished.")
    single, seeds, ensemble, teacher = (part["summary"][key] for key in ("single", "seeds", "ensemble", "teacher"))
    return text + (f"the first student {_against_target(single)}; the {seeds['n']} students {seeds['mean']:.4f} +- "
                   f"{seeds['std']:.4f}; their ensemble {_against_target(ensemble)}; the CNN teacher "
                   f"{_with_ci(teacher['test_acc'], (teacher['ci_low'], teacher['ci_high']))}.")


FIRST, SECOND = study_results.NOTEBOOK, how_far.NOTEBOOK
NOTEBOOKS = {FIRST: study_results.SECTIONS, SECOND: how_far.SECTIONS}


def section_link(section, here=None):
    """A link to section ``section`` of the study: ``[N](#section-N)`` in the notebook ``here``, or ``[N
    (NOTEBOOK)](NOTEBOOK#section-N)`` in the other one (:data:`NOTEBOOKS`: the study numbers its sections once, across
    both); ``here=None`` (the README) always names the notebook."""
    notebook = next(name for name, numbers in NOTEBOOKS.items() if section in numbers)
    if notebook == here:
        return f"[{section}](#section-{section})"
    return f"[{section} ({notebook})]({notebook}#section-{section})"


def glance_markdown(results, here=None):
    """:func:`glance_rows` as a markdown table whose sections link to their notebook's headings
    (:func:`section_link`, from the notebook ``here``)."""
    rows = [(model, accuracy, ci, section_link(section, here)) for model, accuracy, ci, section in
            glance_rows(results)]
    return table(["model", "test accuracy", "95% CI", "section"], rows)


def run_all_section(run_all):
    """What Run All on a fresh clone measured (``log/run_all.json``, written by ``make run-all``): of each notebook
    when the record holds them (``study.runall.record``), or of the one notebook of an older record."""
    problems = run_all["runs_trained"] or run_all["changed_files"] or run_all["differing_cells"]
    verdict = ("trained nothing, changed no tracked file and printed the committed numbers" if not problems else
               f"trained {run_all['runs_trained']} runs, changed {run_all['changed_files']} files and printed other "
               f"numbers in {run_all['differing_cells']} cells")
    notebooks = run_all.get("notebooks")
    if not notebooks:
        return (f"**Run All** of the committed notebook in Jupyter's way (its own parameters, `FRESH = False`) on a "
                f"fresh clone took **{duration(run_all['wall_time_s'])}** (`make run-all`), most of it loading the "
                f"data, measuring the saved models and drawing the figures: it {verdict}.")
    times = " and ".join(f"`{name}` **{duration(each['wall_time_s'])}**" for name, each in notebooks.items())
    failed = run_all.get("failed_exercises", 0)
    return (f"**Run All** of each committed notebook in Jupyter's way (its own parameters, `FRESH = False`) on a fresh "
            f"clone (`make run-all`) took {times}, most of it loading the data, measuring the saved models and "
            f"drawing the figures: together they {verdict}, and "
            + (f"{failed} of their \"Try it yourself\" snippets failed." if failed else
               "every \"Try it yourself\" snippet ran."))


def render(results, log, benches=(), figures=(), budget_log=None, run_all=None):
    """The markdown that goes between the markers."""
    test, best, grid, final = results["test"], results["best"], results["grid"], results["final_training"]
    layers = "-".join(str(n) for n in best["layers"])
    times = [f"grid search {duration(grid['wall_time_s'])} ({grid['runs']} runs on {grid['n_jobs']} processes; the "
             f"runs' own training times add up to {duration(grid['sum_train_time_s'])})"]
    if "halving" in results:
        times.append(f"successive halving {duration(results['halving']['wall_time_s'])}")
    times.append(f"final training {duration(final['wall_time_s'])}")
    for key, name in (("lr_followup", "learning-rate follow-up"), ("seeds", "other seeds (section 8)"),
                      ("frontier", "section 9, reading its recorded runs")):
        if key in results:
            times.append(f"{name} {duration(results[key]['wall_time_s'])}")
    notebook = results["notebook_wall_time_s"]
    if "how_far" in results:  # each notebook its own wall time (study.how_far)
        if "beyond" in results:
            times.append(f"section 7 {duration(results['beyond']['wall_time_s'])}")
        times.append(f"the first notebook {duration(notebook)}, the second "
                     f"{duration(results['how_far']['notebook_wall_time_s'])}")
    elif "beyond" in results:
        section7 = results["beyond"]["wall_time_s"]
        times.append(f"section 7 {duration(section7)}")
        times.append(f"whole notebook {duration(notebook)} ({duration(notebook - section7)} without section 7)")
    else:
        times.append(f"whole notebook {duration(notebook)}")
    wall_times = ("**Wall times**: " + ", ".join(times) + ". They are those of one execution: on a shared virtual "
                  "machine the same code can take markedly longer from one execution to the next.")
    if not grid.get("trained_now", grid["runs"]):
        wall_times = (f"**Wall times**: the execution that wrote these results read every run of sections 3 to 8 from "
                      f"its records and took {duration(notebook)} in all; the grid's runs took "
                      f"{duration(grid['sum_train_time_s'])} of training between them when they were trained "
                      "(`make run` trains every part again and times it).")
    elif grid.get("trained_now", grid["runs"]) < grid["runs"]:
        wall_times += (f" Only {grid['trained_now']} of the runs were trained in that execution, the others were "
                       "resumed from the log: the grid's wall time is not that of the whole grid.")
    parts = [
        "_Written by `python -m study.report` from `log/results.json` and `log/grid_search.csv`; "
        f"numbers of the run of {results.get('written_at', 'unknown date')}._",
        f"**Test set** ({test.get('images', 10000):,} images): accuracy "
        f"**{_with_ci(test['accuracy'], test.get('ci'))}**, cross-entropy loss {test['loss']:.4f}.",
        f"**Best settings** (chosen on the validation set): layers {layers}, learning rate {best['lr']:g}, "
        f"L2 {best['L2_lambda']:g}; validation accuracy {best['best_val_acc']:.4f}.",
        f"**Top five** of the {len(log)}-run grid search, by validation accuracy:\n\n{top_five_table(log)}",
        wall_times,
        *([run_all_section(run_all)] if run_all else []),
        f"**Machine**: {machine_line(results.get('machine', {}))}.",
    ]
    if "halving" in results:
        parts.insert(4, halving_section(results["halving"], grid, best["best_val_acc"]))
    if "lr_followup" in results:
        parts.insert(4, lr_followup_section(results["lr_followup"], best))
    if "beyond" in results:
        parts.append(beyond_section(results["beyond"], test.get("images", 10000)))
        if budget_log is not None:
            parts.append(budget_section(budget_log))
    if "seeds" in results:
        parts.append(seeds_section(results["seeds"]))
    if "frontier" in results:
        parts.append(frontier_section(results["frontier"], test.get("images", 10000)))
    if "finals" in results:
        parts.append(finals_section(results["finals"], test.get("images", 10000)))
    if results.get("validation"):
        parts.append(validation_section(results["validation"]))
    if "teacher" in results:
        parts.append(teacher_section(results["teacher"]))
    parts += list(benches)
    if figures:
        parts.append("\n\n".join(f"![{caption}](figures/{name})" for name, caption in figures))
    return "\n\n".join(parts)
