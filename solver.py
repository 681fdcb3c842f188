"""The Solver: how a model is trained (placeholder of the restructuring in progress: the ranking rule only)."""

import math


def rank_key(val_acc, val_loss, diverged=False):
    """Sort key of the one rule for which run is better: higher validation accuracy, then lower validation loss.

    A run without finite validation numbers, or one that diverged, sorts after every run that has them. Sorting is
    stable, so runs equal on both numbers keep their order (the grid's, say).
    """
    if diverged or not (math.isfinite(val_acc) and math.isfinite(val_loss)):
        return (1, 0.0, 0.0)
    return (0, -val_acc, val_loss)
