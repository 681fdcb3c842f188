"""Wall time of the study's whole grid with one worker and with two, and what successive halving finds for less.

The grid is the study's 48 runs: learning rate 0.005, 0.01, 0.05, 0.1 x layers [784, 256, 128, 10], [784, 128, 64, 10],
[784, 64, 32, 10] x L2 0, 0.001, 0.01, 0.05; ReLU, batch 100, step decay 0.95 every 500 batches, the 6,000
validation rows evaluated every 100 batches, seed 0, 40 epochs: ``study.config``'s full grid and recipe. It is
trained by ``study.grid.grid_search`` with ``n_jobs=1`` and with ``n_jobs=2``, each into its own temporary log (never
the study's ``log/``), and the two logs must hold the same numbers. Then ``study.halving.halving_search`` runs over
the same 48 settings (factor 3, from 2 epochs to the grid's) with two workers; its pick is looked up in the grid's
log.

    python bench/bench_grid.py [--epochs 40] [--skip-serial] [--output bench/grid_results.json]

Targets: the grid in at most 6.5 minutes with n_jobs=2; halving's pick within 0.3 points of the grid's best
validation accuracy, for at most a third of the grid's epochs. ``--epochs 1 --skip-serial`` is a quick check of the
script, not a measurement. Wall times on a machine that is busy with other work mean little.
"""

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from harness import load_data, write_results

GRID_TARGET_S, GAP_TARGET_POINTS, EPOCHS_TARGET_FRACTION = 6.5 * 60, 0.3, 1 / 3
NUMBERS = ["best_val_acc", "best_val_loss", "best_iteration", "diverged"]


def compare(a, b):
    """How far apart two grid logs of the same runs are, in any order: a dict whose ``same`` says bit-equal numbers.

    Not the times. Every run computes with one BLAS thread whatever ``n_jobs`` is (``study.runs.blas_threads``), so
    the logs of ``n_jobs=1`` and ``n_jobs=2`` must be equal; the differences are counted to show it.
    """
    from study.runs import SETTINGS

    a, b = (log[SETTINGS + NUMBERS].sort_values(SETTINGS).reset_index(drop=True) for log in (a, b))
    if not a[SETTINGS].equals(b[SETTINGS]):
        raise ValueError("the two logs do not hold the same runs")
    return {"same": bool(a.equals(b)),
            "max_abs_val_loss_difference": float((a["best_val_loss"] - b["best_val_loss"]).abs().max()),
            "runs_with_other_val_accuracy": int((a["best_val_acc"] != b["best_val_acc"]).sum()),
            "runs_with_other_best_iteration": int((a["best_iteration"] != b["best_iteration"]).sum())}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40, help="epochs of a grid run and of halving's last rung")
    parser.add_argument("--skip-serial", action="store_true", help="do not train the grid with n_jobs=1")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("grid_results.json"))
    args = parser.parse_args()

    from study import config, grid, halving, runs

    cfg = config.study_config(quick=False)
    recipe = {key: value for key, value in cfg.model_kwargs.items() if key != "max_epoch"}
    X_train, y_train, X_val, y_val, data = load_data()
    grid_epochs = len(cfg.grid) * args.epochs
    print(f"data: {data}; {len(cfg.grid)} runs of {args.epochs} epoch(s), {grid_epochs} epochs in all")

    seconds, logs = {}, {}
    with TemporaryDirectory() as tmp:
        for n_jobs in [2] if args.skip_serial else [1, 2]:
            started = time.perf_counter()
            logs[n_jobs] = grid.grid_search(cfg.grid, X_train, y_train, X_val, y_val, Path(tmp) / f"grid_{n_jobs}.csv",
                                            Path(tmp) / f"histories_{n_jobs}", n_jobs=n_jobs, max_epoch=args.epochs,
                                            **recipe)
            seconds[n_jobs] = time.perf_counter() - started
            print(f"grid with n_jobs={n_jobs}: {seconds[n_jobs]:.1f} s")
        started = time.perf_counter()
        halving_log = halving.halving_search(cfg.grid, X_train, y_train, X_val, y_val, Path(tmp) / "halving.csv",
                                             factor=cfg.halving_factor,
                                             min_epochs=min(cfg.halving_min_epochs, args.epochs),
                                             max_epochs=args.epochs, n_jobs=2, **recipe)
        halving_seconds = time.perf_counter() - started

    ratio = seconds[1] / seconds[2] if 1 in seconds else None
    if ratio is not None:
        print(f"n_jobs=1 / n_jobs=2: {ratio:.2f}")
    print(f"grid with n_jobs=2: {seconds[2] / 60:.2f} min  (target at most {GRID_TARGET_S / 60:.1f} min)")
    comparison = compare(logs[1], logs[2]) if 1 in logs else None
    if comparison is not None:
        print(f"n_jobs=1 and n_jobs=2 logs hold the same numbers: {comparison['same']}")
        if not comparison["same"]:
            print(f"  max |val_loss difference| {comparison['max_abs_val_loss_difference']:.3g}; other val acc in "
                  f"{comparison['runs_with_other_val_accuracy']} runs, other best iteration in "
                  f"{comparison['runs_with_other_best_iteration']} (BLAS threads differ: see compare())")

    grid_log = logs[2]  # trained with the same BLAS threads per run as the halving search
    best = grid.best_settings(grid_log)
    best_accuracy = float(runs.find_row(grid_log, best)["best_val_acc"])
    result = halving.halving_result(halving_log)
    picked = result["settings"]
    picked_row = runs.find_row(grid_log, picked)
    picked_accuracy = float(picked_row["best_val_acc"])
    # A survivor continued rung after rung ends where the same settings trained at once end.
    continued_exactly = ((result["best_val_acc"], result["best_val_loss"])
                         == (picked_accuracy, picked_row["best_val_loss"]))
    gap = 100 * (best_accuracy - picked_accuracy)
    fraction = result["epochs_spent"] / grid_epochs
    print(f"grid's best: {runs.run_name(best)}  val acc {best_accuracy:.4f}")
    print(f"halving picks: {runs.run_name(picked)}  val acc {picked_accuracy:.4f} in the grid "
          f"({result['best_val_acc']:.4f} in its own last rung, {'the same' if continued_exactly else 'NOT the same'}"
          f" numbers), {result['rungs']} rung(s), {halving_seconds:.1f} s")
    print(f"gap to the grid's best: {gap:.2f} points  (target at most {GAP_TARGET_POINTS})")
    print(f"epochs: {result['epochs_spent']} against the grid's {grid_epochs} = {fraction:.1%}  "
          f"(target at most {EPOCHS_TARGET_FRACTION:.1%})")

    write_results(args.output, {
        "data": data, "epochs": args.epochs, "runs": len(cfg.grid),
        "grid": {"seconds_n_jobs_1": seconds.get(1), "seconds_n_jobs_2": seconds[2], "ratio": ratio,
                 "target_seconds_n_jobs_2": GRID_TARGET_S, "n_jobs_1_against_2": comparison,
                 "best_settings": runs.run_name(best), "best_val_accuracy": best_accuracy},
        "halving": {"factor": cfg.halving_factor, "min_epochs": min(cfg.halving_min_epochs, args.epochs),
                    "seconds": halving_seconds,
                    "settings": runs.run_name(picked), "val_accuracy": result["best_val_acc"],
                    "grid_val_accuracy": picked_accuracy, "same_numbers_as_grid_run": continued_exactly,
                    "gap_points": gap, "target_gap_points": GAP_TARGET_POINTS,
                    "epochs_spent": result["epochs_spent"], "grid_epochs": grid_epochs, "epochs_fraction": fraction,
                    "target_epochs_fraction": EPOCHS_TARGET_FRACTION, "rungs": result["rungs"]},
    })


if __name__ == "__main__":
    main()
