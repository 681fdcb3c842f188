"""Section 9 of the study, "How far can an MLP go?": batch normalisation, augmentation, ensembles and distillation.

The job trains section 9's runs once, ``make frontier`` (hours on 2 cores, run once; its records are committed and
the notebook reads them; ``--status`` says what is done and the time left):

    python -m study.frontier [--jobs 2] [--scheduler tcp://HOST:8786] [--fresh] [--status]

1. the first round's **candidates**, ``config.FRONTIER_RECIPE`` with each of ``config.FRONTIER_CANDIDATES``' changes
   (seed 0): the one with the best validation numbers (``runs.ranked``, :func:`choose`) is its chosen recipe;
2. the first round's **members**: that recipe again with each of ``config.FRONTIER_SEEDS``;
3. the second round's candidates, ``config.FRONTIER_ROUND_TWO``;
4. the **finals** of ``study.finals``, from the candidates of both rounds.

For the first round, the notebook chooses the ensemble on validation (:func:`ensemble_of`: how many members, whether
each image is also averaged with its mirror image), measures every model once on the test set, judges the targets
(:func:`summary`) and compares the models with McNemar's tests (:func:`significance`); ``study.finals`` does the same
for the finals.

Every run is recorded as it finishes (``study.records``: its weights in ``weights/frontier/``, its history, a row of
``log/frontier.csv`` keyed by its settings and the data; once the job is finished, a candidate compared on validation
alone keeps its validation probabilities instead of its weights), so an interrupted job goes on from there; the run in
flight writes a checkpoint after every epoch (``log/checkpoints/``) only when it trains here, one at a time. Runs go
``--jobs`` at a time through ``runs.dispatch``, one BLAS thread each, on this machine's cores, or on a Dask cluster
whose scheduler ``--scheduler`` names (start one with ``dask scheduler`` and a ``dask worker`` per machine; the
workers need this repository's code, see the README). The test set plays no part in any choice; the notebook measures
it once per final model.
"""

import argparse
import contextlib
import sys
from functools import partial

import joblib
import pandas as pd

import mnist_reader
from study import beyond, config, finals, records, runs, stats
from study.ensemble import Ensemble, scores


def recorded(cfg, named_settings, data, desc, n_jobs=1, fresh=False, progress=True, train=True):
    """Section 9's runs of ``named_settings`` on ``data``, each read from its record (``cfg.frontier_records``) or,
    with ``train``, trained and recorded first, ``n_jobs`` at a time with a checkpoint per epoch: ``{name: model}``.
    Without ``train``, a run that has no record for these settings and data is a FileNotFoundError that says how to
    make it (``make frontier``)."""
    store = cfg.frontier_records
    missing = [] if train else store.missing(named_settings, data)
    if missing:
        raise FileNotFoundError(f"section 9's runs {missing} have no record in {store.log_path} for these settings "
                                "and data: train them with `make frontier` (hours on 2 cores; --status says how many)")
    return records.fit_or_read(named_settings, data, store, n_jobs=n_jobs, fresh=fresh, progress=progress, desc=desc,
                               checkpoint_dir=cfg.log_dir / "checkpoints")


def train_frontier(cfg, data, n_jobs=1, fresh=False, progress=True, train=True):
    """Section 9's first round on ``data`` (``X_train, y_train, X_val, y_val``), through :func:`recorded`:
    ``(candidates, chosen, members)``, two dicts ``{name: model}`` and the chosen candidate's name; the members
    include the chosen candidate, first."""
    options = dict(n_jobs=n_jobs, fresh=fresh, progress=progress, train=train)
    candidate_settings = cfg.frontier_candidate_settings()
    candidates = recorded(cfg, candidate_settings, data, "frontier candidates", **options)
    chosen = choose(candidates)
    others = recorded(cfg, cfg.frontier_member_settings(chosen, candidate_settings[chosen]), data, "frontier members",
                      **options)
    return candidates, chosen, {chosen: candidates[chosen], **others}


def train_round_two(cfg, data, n_jobs=1, fresh=False, progress=True, train=True):
    """The second round's candidates (``config.FRONTIER_ROUND_TWO``) on ``data``, through :func:`recorded`:
    ``{name: model}``."""
    return recorded(cfg, cfg.frontier_candidate_settings(cfg.frontier_round_two), data, "frontier, round two",
                    n_jobs=n_jobs, fresh=fresh, progress=progress, train=train)


def status(cfg, data):
    """What the job has done and has still to do, and the time left at the epoch times measured so far: a table of
    its runs (done, in progress from a checkpoint, or to do) and a sentence. Once every candidate is done and the
    finals have started, the finals are listed by name (:func:`final_names`); before that they count as the most they
    can be, each as long as the recipe's schedule. Each run's state is read from its own record alone."""
    store, checkpoints = cfg.frontier_records, cfg.log_dir / "checkpoints"
    settings = {**cfg.frontier_candidate_settings(), **cfg.frontier_candidate_settings(cfg.frontier_round_two)}
    logged = store.read_log()
    finals_started = sorted({*(name for name in logged if name not in settings and is_final(name)),
                             *(path.stem for path in checkpoints.glob("*.npz") if is_final(path.stem))})
    rows = [run_state(store, checkpoints, name, logged.get(name), runs.run_key(run, data), run["max_epoch"])
            for name, run in settings.items()]
    if finals_started and all(row["state"] == "done" for row in rows):
        rows += [run_state(store, checkpoints, name, logged.get(name), None, cfg.frontier_recipe["max_epoch"])
                 for name in final_names(cfg, store, settings, data)]
    else:
        rows += [run_state(store, checkpoints, name, logged.get(name), None, cfg.frontier_recipe["max_epoch"])
                 for name in finals_started]
        planned = (len(cfg.final_seeds) + cfg.ensemble_max_members - 1 + len(cfg.distill_temperatures) + 1
                   - len(finals_started))
        rows.append({"run": f"finals not started (up to {planned} runs)", "state": "to do", "epochs": 0,
                     "of": planned * cfg.frontier_recipe["max_epoch"], "s_per_epoch": float("nan")})
    table = pd.DataFrame(rows)
    per_epoch = table["s_per_epoch"].dropna().median()
    left = ((table["of"] - table["epochs"]) * table["s_per_epoch"].fillna(per_epoch)).sum()
    return table, (f"{(table['state'] == 'done').sum()} of {len(table)} runs done; about {left / 3600:.1f} hours of "
                   "training left at the epoch times measured so far (two runs at a time halve the wall time)")


def final_names(cfg, store, settings, data):
    """The names of the final runs (``finals.final_names``) as the job chooses them from the candidates' records
    (``settings``, all recorded in ``store``) on ``data``'s validation set; nothing is written."""
    candidates = store.read_all(settings)
    probabilities = finals.candidate_probabilities(store, candidates, data[2], record=False)
    members, _, _ = finals.ensemble_members(probabilities, data[3], cfg.ensemble_max_members)
    return finals.final_names(cfg, choose(candidates), members)


def is_final(name):
    """Whether ``name`` is one of ``study.finals``' runs (on all the training images, or a distilled student)."""
    return "_all_seed" in name or name.startswith("distilled_")


def run_state(store, checkpoints, name, row, key, max_epoch):
    """One run's row of :func:`status`: done (a complete record, of ``key`` when given), in progress (a
    checkpoint), or to do; its epochs and measured seconds an epoch."""
    if store.complete(row, key):
        epochs = runs.read_history(store.history_path(name), "restore it from git")["epoch"].max()
        return {"run": name, "state": "done", "epochs": epochs, "of": epochs,
                "s_per_epoch": row["train_time_s"] / epochs}
    checkpoint = checkpoints / f"{name}.npz"
    done, seconds = 0, float("nan")
    if checkpoint.exists():
        resumed = runs.resume(checkpoint)
        done, seconds = resumed.epoch, resumed.train_time_s / max(resumed.epoch, 1)
    return {"run": name, "state": "in progress" if done else "to do", "epochs": done, "of": max_epoch,
            "s_per_epoch": seconds}


def choose(candidates):
    """The name of the candidate with the best validation numbers (``runs.ranked``, through
    ``beyond.best_on_validation``)."""
    best = beyond.best_on_validation(list(candidates.values()))
    return next(name for name, model in candidates.items() if model is best)


def ensemble_choices(members, X_val, y_val):
    """The ensembles to choose from, measured on the validation set: the first ``k`` of ``members`` (in their order,
    the chosen candidate first), for every ``k``, without and with flip averaging (each image averaged with its
    mirror image). Ordered by ``k``, then without flips first, so that among equal numbers ``runs.ranked`` prefers
    the smaller ensemble."""
    grown = {flip: Ensemble(members.values(), flip_average=flip).growing_probabilities(X_val) for flip in (False, True)}
    rows = [(k, flip, *scores(grown[flip][k - 1], y_val)) for k in range(1, len(members) + 1) for flip in (False, True)]
    return pd.DataFrame(rows, columns=["members", "flip_average", "val_acc", "val_loss"])


def ensemble_of(members, X_val, y_val):
    """The ensemble chosen on the validation set among :func:`ensemble_choices` by ``runs.ranked`` (the study's one
    rule: higher accuracy, then lower loss), and the table of choices with a ``chosen`` column."""
    choices = ensemble_choices(members, X_val, y_val)
    best = runs.ranked(choices.rename(columns={"val_acc": "best_val_acc", "val_loss": "best_val_loss"})
                       .assign(diverged=False)).index[0]
    ensemble = Ensemble(list(members.values())[:choices.loc[best, "members"]],
                        flip_average=bool(choices.loc[best, "flip_average"]))
    return ensemble, choices.assign(chosen=choices.index == best)


def summary(table, single, ensemble_size, targets=config.FRONTIER_TARGETS):
    """What :func:`measure_on_test`'s ``table`` says about the targets: the ``single`` member's test accuracy (the
    member chosen on validation), the spread of the members' test accuracies, and the ensemble's (of
    ``ensemble_size`` members), each with whether it reaches its target (``targets``: ``{"single": ...,
    "ensemble": ...}``): a target is reached when the test accuracy is at least the target."""
    rows = table.set_index("model")
    return {"single": finals.against_target(rows, single, targets["single"]),
            "members_test": stats.spread(rows.drop(index="ensemble")["test_acc"]),
            "ensemble": dict(finals.against_target(rows, "ensemble", targets["ensemble"]), members=int(ensemble_size)),
            "published": config.PUBLISHED_MLP_ACCURACY}


def describe_summary(found):
    """:func:`summary` in three sentences."""
    single, spread, ensemble = found["single"], found["members_test"], found["ensemble"]

    def verdict(entry):
        return "reaches" if entry["reached"] else "falls short of"

    return (f"the single MLP chosen on validation ({single['model']}): test accuracy {single['test_acc']:.4f} (95% CI "
            f"{stats.format_ci(single['ci_low'], single['ci_high'])}); it {verdict(single)} the target "
            f"{single['target']:g}; the best published pure MLP: {found['published']:.4f}\n"
            f"the {spread['n']} members on the test set: {spread['mean']:.4f} +- {spread['std']:.4f} "
            f"({spread['min']:.4f} to {spread['max']:.4f})\n"
            f"the ensemble: test accuracy {ensemble['test_acc']:.4f} (95% CI "
            f"{stats.format_ci(ensemble['ci_low'], ensemble['ci_high'])}); it {verdict(ensemble)} the target "
            f"{ensemble['target']:g}")


def significance(y_test, predictions, wide_predictions, single):
    """McNemar's exact tests on the test set: the single member chosen on validation and the ensemble, each against
    section 7's wide network, then the ensemble against that member; a ``reference`` column names each one's."""
    single_name = f"single MLP ({single})"
    against_wide = stats.mcnemar_table(y_test, {finals.WIDE: wide_predictions, single_name: predictions[single],
                                                "ensemble": predictions["ensemble"]}, finals.WIDE)
    against_single = stats.mcnemar_table(y_test, {single_name: predictions[single],
                                                  "ensemble": predictions["ensemble"]}, single_name)
    return pd.concat([against_wide.assign(reference=finals.WIDE), against_single.assign(reference=single_name)],
                     ignore_index=True)


def results(candidates, chosen, choices, table, found, tests, wall_time_s):
    """Section 9's part of ``log/results.json``."""
    return {"recipe": beyond.describe(candidates[chosen]), "candidates": choice_table(candidates, chosen),
            "chosen": chosen, "ensemble_choices": choices,
            "test": table, "summary": found, "mcnemar": tests, "wall_time_s": wall_time_s}


def choice_table(candidates, chosen):
    """The candidates as the notebook and the README show them: their round, what they change in
    ``config.FRONTIER_RECIPE`` (:func:`describe_changes`), validation numbers, epochs, training time."""
    changes = {**config.FRONTIER_CANDIDATES, **config.FRONTIER_ROUND_TWO}
    rows = [{"candidate": name, "round": 2 if name in config.FRONTIER_ROUND_TWO else 1, "chosen": name == chosen,
             "changes": describe_changes(changes.get(name, {})), "best_val_acc": model.best_val_acc,
             "best_val_loss": model.best_val_loss, "epochs": model.epoch, "train_time_s": model.train_time_s}
            for name, model in candidates.items()]
    return pd.DataFrame(rows)


def describe_changes(changes):
    """A candidate's changes to section 9's recipe (``config.FRONTIER_CANDIDATES``, ``config.FRONTIER_ROUND_TWO``)
    in words: ``"shifts up to 1 px, flips, label smoothing 0.1"``; ``"none"`` for the recipe itself."""
    phrases = {"augment_shift": lambda v: f"shifts up to {v} px", "augment_flip": lambda v: "flips",
               "label_smoothing": lambda v: f"label smoothing {v:g}",
               "weight_average": lambda v: f"moving average of the weights (decay {v:g})",
               "layers": lambda v: f"{len(v) - 2}x{v[1]}", "dropout": lambda v: f"dropout {v:g}",
               "lr": lambda v: f"lr {v:g}", "L2_lambda": lambda v: f"weight decay {v:g}",
               "decay_epochs": lambda v: f"lr x{changes['decay_factor']:g} after epochs {', '.join(map(str, v))}",
               "input_mean": lambda v: "standardised inputs"}
    return ", ".join(phrases[key](value) for key, value in changes.items() if key in phrases) or "none"


SCHEDULER_TIMEOUT_S = 10  # how long to try to reach a Dask scheduler before saying it cannot be reached


def dask_client(address):
    """A ``dask.distributed.Client`` of the scheduler at ``address``; SystemExit with status 2 and a sentence on
    stderr saying what to do when dask is not installed or the scheduler cannot be reached."""
    try:
        from dask.distributed import Client  # optional: only a cluster run needs it
    except ImportError:
        fail('--scheduler needs dask.distributed, which is not installed: pip install "dask[distributed]" (it is in '
             "requirements-dev.txt), or leave out --scheduler to train on this machine's cores")
    try:
        return Client(address, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, ValueError) as error:  # refused, timed out, unknown host, or not an address
        fail(f"could not reach a Dask scheduler at {address} ({error}): start one there (dask scheduler) or pass "
             "the address it prints, or leave out --scheduler to train on this machine's cores")


def fail(message):
    """End the job with ``message`` on stderr and exit status 2, as argparse does for a bad argument: the message
    says all there is, so no traceback."""
    print(f"study.frontier: {message}", file=sys.stderr)
    raise SystemExit(2)


def job_arguments(argv, description, section):
    """The command line of a recorded job (this module's, ``study.teacher``'s): ``--jobs``, ``--scheduler``,
    ``--fresh``, ``--quick`` (``section`` in miniature) and ``--status``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, one BLAS thread each")
    parser.add_argument("--scheduler", help="address of a Dask scheduler (tcp://HOST:8786) to train the runs on")
    parser.add_argument("--fresh", action="store_true",
                        help="train every run again (the old log, weights and histories are kept as .bak)")
    parser.add_argument("--quick", action="store_true", help=f"{section} in miniature, into a temporary folder")
    parser.add_argument("--status", action="store_true", help="print the runs done and to do, and the time left")
    return parser.parse_args(argv)


def on_cluster(stack, address):
    """With ``address``, train the job's runs on the Dask cluster whose scheduler it names, for as long as
    ``stack`` (a ``contextlib.ExitStack``) is open; an unreachable cluster is said at once (:func:`dask_client`)."""
    if address:
        stack.enter_context(dask_client(address))
        stack.enter_context(joblib.parallel_config(backend="dask"))


def main(argv=None):
    args = job_arguments(argv, __doc__, "section 9")
    cfg = config.study_config(quick=args.quick)
    if args.status:
        X_train, y_train, X_val, y_val, _, _ = config.subsample(
            mnist_reader.load_fashion_mnist(seed=cfg.split_seed, val_fraction=cfg.val_fraction), cfg)
        try:
            table, sentence = status(cfg, (X_train, y_train, X_val, y_val))
        except (records.RecordError, ValueError) as error:  # its sentence names the file and what to do
            fail(str(error))
        print(table.round(1).to_string(index=False))
        print(sentence)
        return
    with contextlib.ExitStack() as stack:
        on_cluster(stack, args.scheduler)  # before the data loads
        X_train, y_train, X_val, y_val, _, _ = config.subsample(
            mnist_reader.load_fashion_mnist(seed=cfg.split_seed, val_fraction=cfg.val_fraction), cfg)
        data = (X_train, y_train, X_val, y_val)
        try:
            candidates, chosen, members = train_frontier(cfg, data, n_jobs=args.jobs, fresh=args.fresh)
            round_two = train_round_two(cfg, data, n_jobs=args.jobs, fresh=args.fresh)
            everyone = {**candidates, **round_two}
            found = finals.train_finals(cfg, data, everyone, choose(everyone),
                                        partial(recorded, cfg, n_jobs=args.jobs, fresh=args.fresh), tested=members)
        except records.RecordError as error:  # a record in the way, or not what it says: the sentence says what to do
            fail(str(error))
    print(choice_table(everyone, found["chosen"]).to_string(index=False))
    print(found["member_steps"].round(4).to_string(index=False))
    print(f"distillation's temperature, chosen on validation: {found['temperature']:g}")
    ensemble, choices = ensemble_of(members, X_val, y_val)
    print(choices.round(4).to_string(index=False))
    print(f"chosen: {chosen}; the ensemble of its first {len(ensemble.members)} members, flip averaging "
          f"{'on' if ensemble.flip_average else 'off'}")


if __name__ == "__main__":
    main()
