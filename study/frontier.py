"""Section 9 of the study, "How far can an MLP go?": batch normalisation, augmentation and an ensemble of MLPs.

The job trains section 9's runs once, ``make frontier`` (about two hours on 2 cores, run once; its records are
committed and the notebook reads them):

    python -m study.frontier [--jobs 2] [--scheduler tcp://HOST:8786] [--fresh]

1. the **candidates**, ``config.FRONTIER_RECIPE`` with each of ``config.FRONTIER_CANDIDATES``' changes (seed 0): the
   one with the best validation numbers (``runs.ranked``) is the chosen recipe;
2. the **members**: the chosen recipe again with each of ``config.FRONTIER_SEEDS``. The ensemble is the chosen
   candidate and the members (:func:`ensemble_of`); whether it also averages each image with its mirror image is
   decided on validation too (:func:`flip_average_helps`).

Every run is recorded as it finishes (``study.records``: its weights in ``weights/frontier/``, its history, a row of
``log/frontier.csv`` keyed by its settings and the data), so an interrupted job goes on from there; the run in
flight writes a checkpoint after every epoch (``log/checkpoints/``) only when it trains here, one at a time. Runs go
``--jobs`` at a time through ``runs.dispatch``, one BLAS thread each, on this machine's cores, or on a Dask cluster
whose scheduler ``--scheduler`` names (start one with ``dask scheduler`` and a ``dask worker`` per machine; the
workers need this repository's code, see the README). The test set plays no part in any choice; the notebook measures
it once per final model.
"""

import argparse
import contextlib

import joblib
import pandas as pd

import mnist_reader
from study import beyond, config, records
from study.ensemble import Ensemble


def train_frontier(cfg, data, n_jobs=1, fresh=False, progress=True, train=True):
    """Section 9's runs on ``data`` (``X_train, y_train, X_val, y_val``), each read from its record or, with
    ``train``, trained and recorded first: ``(candidates, chosen, members)``, two dicts ``{name: model}`` and the
    chosen candidate's name; the members include the chosen candidate, first. Without ``train``, a run that has no
    record for these settings and data is a FileNotFoundError that says how to make it (``make frontier``)."""
    store, checkpoints = cfg.frontier_records, cfg.log_dir / "checkpoints"

    def fit_or_read(named_settings, desc, fresh):
        missing = store.missing(named_settings, data)
        if missing and not train:
            raise FileNotFoundError(f"section 9's runs {missing} have no record in {store.log_path} for these "
                                    "settings and data: train them with `make frontier` (about two hours on 2 cores)")
        return records.fit_or_read(named_settings, data, store, n_jobs=n_jobs, fresh=fresh, progress=progress,
                                   desc=desc, checkpoint_dir=checkpoints)

    candidate_settings = cfg.frontier_candidate_settings()
    candidates = fit_or_read(candidate_settings, "frontier candidates", fresh)
    chosen = choose(candidates)
    others = fit_or_read(cfg.frontier_member_settings(chosen, candidate_settings[chosen]), "frontier members", fresh)
    return candidates, chosen, {chosen: candidates[chosen], **others}


def choose(candidates):
    """The name of the candidate with the best validation numbers (``runs.ranked``, through
    ``beyond.best_on_validation``)."""
    best = beyond.best_on_validation(list(candidates.values()))
    return next(name for name, model in candidates.items() if model is best)


def ensemble_of(members, X_val, y_val):
    """The ensemble of ``members``, averaging each image with its mirror image when that scores better on the
    validation set (:func:`flip_average_helps`)."""
    return Ensemble(members.values(), flip_average=flip_average_helps(members, X_val, y_val))


def flip_average_helps(members, X_val, y_val):
    """Whether averaging each image with its mirror image raises the ensemble's validation accuracy (ties: no)."""
    plain, flipped = (Ensemble(members.values(), flip_average=flip).evaluate(X_val, y_val)[0] for flip in (False, True))
    return flipped > plain


def choice_table(candidates, chosen):
    """The candidates as the notebook and the README show them: what differs, validation numbers, epochs, time."""
    rows = [{"candidate": name, "chosen": name == chosen, "settings": beyond.describe(model),
             "augmentation": describe_augmentation(model), "best_val_acc": model.best_val_acc,
             "best_val_loss": model.best_val_loss, "epochs": model.epoch, "train_time_s": model.train_time_s}
            for name, model in candidates.items()]
    return pd.DataFrame(rows)


def describe_augmentation(model):
    words = ([f"shifts up to {model.augment_shift} px"] if model.augment_shift else []) + \
            (["flips"] if model.augment_flip else [])
    return " and ".join(words) or "none"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, one BLAS thread each")
    parser.add_argument("--scheduler", help="address of a Dask scheduler (tcp://HOST:8786) to train the runs on")
    parser.add_argument("--fresh", action="store_true", help="train every run again (the old log is kept as .bak)")
    parser.add_argument("--quick", action="store_true", help="section 9 in miniature, into a temporary folder")
    args = parser.parse_args(argv)
    cfg = config.study_config(quick=args.quick)
    X_train, y_train, X_val, y_val, _, _ = config.subsample(
        mnist_reader.load_fashion_mnist(seed=cfg.split_seed, val_fraction=cfg.val_fraction), cfg)
    with contextlib.ExitStack() as stack:
        if args.scheduler:
            from dask.distributed import Client  # optional: only a cluster run needs it

            stack.enter_context(Client(args.scheduler))
            stack.enter_context(joblib.parallel_config(backend="dask"))
        candidates, chosen, members = train_frontier(cfg, (X_train, y_train, X_val, y_val), n_jobs=args.jobs,
                                                     fresh=args.fresh)
    print(choice_table(candidates, chosen).to_string(index=False))
    ensemble = ensemble_of(members, X_val, y_val)
    print(f"chosen: {chosen}; ensemble of {len(members)} members, flip averaging "
          f"{'on' if ensemble.flip_average else 'off'}: validation accuracy {ensemble.evaluate(X_val, y_val)[0]:.4f}")


if __name__ == "__main__":
    main()
