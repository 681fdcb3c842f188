"""The learning-rate follow-up of section 3: the grid's best learning rate is its largest, so the grid cannot show
where the rise of the validation accuracy stops.

The follow-up trains the grid's best architecture and L2 strength with larger rates (``config.followup_lrs``), with
the grid's recipe, through ``grid.grid_search`` into a log of its own. :func:`lr_table` sets these runs beside the
grid's runs of the same architecture and L2 strength, and :func:`verdict` says where the validation accuracy peaks
and whether the choice would change. Validation only: the test set never enters this module, and the model the
study tests stays the one the grid chose.
"""

import pandas as pd

from study import runs

COLUMNS = ["lr", "best_val_acc", "best_val_loss", "best_iteration", "diverged", "source"]


def lr_table(grid_log, followup_log, best):
    """The runs of ``best``'s architecture and L2 strength from the grid's log and the follow-up's, one row per
    learning rate (the grid's row where both hold one), by increasing rate; ``source`` says which log."""
    wanted = (runs.layers_name(best["layers"]), runs.settings_key(best)[2])
    parts = []
    for source, log in (("grid", grid_log), ("follow-up", followup_log)):
        keys = [runs.settings_key(row) for row in log.to_dict("records")]
        same = log[[(key[0], key[2]) == wanted for key in keys]]
        parts.append(same.assign(source=source))
    table = pd.concat(parts, ignore_index=True).drop_duplicates(subset="lr", keep="first")
    return table.sort_values("lr", kind="mergesort")[COLUMNS].reset_index(drop=True)


def verdict(table, best):
    """Where the validation accuracy of :func:`lr_table` peaks (``runs.ranked``: accuracy, then lower loss), and
    whether that would change the grid's choice ``best``: a dict with ``peak_lr``, ``peak_val_acc``,
    ``chosen_lr``, ``chosen_val_acc``, ``gain_points`` (peak minus chosen, in points), ``largest_lr`` (whether the
    peak is at the largest rate tried, where the rise has not been seen to stop) and ``changes_choice``."""
    ranked = runs.ranked(table)
    if ranked.empty:
        raise ValueError("no run of the follow-up or the grid's row finished without diverging")
    peak = ranked.iloc[0]
    chosen = table[table["lr"] == best["lr"]].iloc[0]
    return {"peak_lr": float(peak["lr"]), "peak_val_acc": float(peak["best_val_acc"]),
            "chosen_lr": float(best["lr"]), "chosen_val_acc": float(chosen["best_val_acc"]),
            "gain_points": 100 * float(peak["best_val_acc"] - chosen["best_val_acc"]),
            "largest_lr": bool(peak["lr"] == table["lr"].max()),
            "changes_choice": bool(peak["lr"] != best["lr"]),
            "diverged_lrs": [float(lr) for lr in table.loc[table["diverged"], "lr"]]}


def describe_verdict(found, layers, L2_lambda):
    """:func:`verdict` in a sentence or two."""
    where = f"On {runs.layers_name(layers)} with L2 {L2_lambda:g}"
    text = (f"{where} the validation accuracy peaks at lr {found['peak_lr']:g} ({found['peak_val_acc']:.4f})"
            + (", the largest rate tried: the rise has not been seen to stop" if found["largest_lr"] else "")
            + ".")
    if found["changes_choice"]:
        text += (f" Chosen on validation alone, the learning rate would move from {found['chosen_lr']:g} to "
                 f"{found['peak_lr']:g}, for {found['gain_points']:+.2f} points of validation accuracy.")
    else:
        text += f" The grid's choice, lr {found['chosen_lr']:g}, stays."
    if found["diverged_lrs"]:
        text += f" Diverged: lr {', '.join(f'{lr:g}' for lr in found['diverged_lrs'])}."
    return text
