"""Speed of section 9's recipe: modules.MLP against PyTorch and against its bare matrix products on the same work,
in one run, and what augmentation costs.

The recipe is the one section 9's finals train, ``study.config.FRONTIER_RECIPE`` with the changes of its
``shift1_flip_smoothing`` candidate: [784, 1024, 1024, 1024, 10], batch normalisation before each ReLU, dropout 0.2
after it, AdamW (lr 1e-3, weight decay 1e-4), a cosine schedule per batch, batch 128, each batch's images moved by
up to a pixel and mirrored half the time, label smoothing 0.1, the 6,000 validation rows evaluated every 422
batches. A run trains its first few epochs: the time per epoch does not depend on where in the schedule it is.
Beside it: the matrix products of the same work and nothing else (the floor no implementation on this BLAS can
beat), section 7's wide network (what the augmentation's cost is measured against), PyTorch doing the recipe twice
(with its defaults, and with AdamW's fused step, the stronger reference), and the same matrix products through
PyTorch's BLAS (MKL in its CPU wheels). NumPy's BLAS (OpenBLAS) and PyTorch's are not equally fast on every
processor, so the ratio to PyTorch moves from machine to machine; each framework's epoch less its own floor says
what it adds to its products (``study.benches.blas_split``).

    python bench/bench_frontier.py [--epochs 2] [--repeats 3] [--output bench/frontier_results.json]
"""

import argparse
import json
import time
from pathlib import Path

from harness import load_data, matmul_floor, run_benchmark, train_torch, warm_up, write_results

from study.config import FRONTIER_RECIPE, FRONTIER_ROUND_TWO, study_config

CHANGES = FRONTIER_ROUND_TWO["shift1_flip_smoothing"]
SETTINGS = dict(FRONTIER_RECIPE, **CHANGES)


def run_numpy_mlp(epochs, settings=SETTINGS):
    from modules import MLP

    data = load_data()[:4]
    warm_up(dict(settings, print_log=False), *data)
    model = MLP(**dict(settings, print_log=False, seed=0))
    model.train(*data, epochs=epochs)
    return model.train_time_s / epochs, model.best_val_acc


def run_matmul_floor(epochs, library="numpy"):
    return matmul_floor(SETTINGS["layers"], SETTINGS["batch_size"], SETTINGS["print_iter"], epochs, library)


def run_torch_matmul_floor(epochs):
    """The same products through PyTorch's BLAS: how much of the ratio to PyTorch is the two BLAS libraries."""
    return run_matmul_floor(epochs, library="torch")


def run_wide_network(epochs):
    """Section 7's wide network, the yardstick of the augmentation's cost."""
    return run_numpy_mlp(epochs, study_config(quick=False).wide_settings)


def run_torch(epochs, fused=None):
    import torch

    def make_schedule(optimizer, batches_per_epoch):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=SETTINGS["max_epoch"] * batches_per_epoch)

    return train_torch(SETTINGS["layers"], epochs, SETTINGS["batch_size"], SETTINGS["print_iter"],
                       lambda params: torch.optim.AdamW(params, lr=SETTINGS["lr"], weight_decay=SETTINGS["L2_lambda"],
                                                        fused=fused),
                       make_schedule, dropout=SETTINGS["dropout"], batch_norm=True,
                       augment=(CHANGES["augment_shift"], CHANGES["augment_flip"]),
                       label_smoothing=CHANGES["label_smoothing"])


def run_torch_fused(epochs):
    """PyTorch with AdamW's fused step (``fused=True``, on the CPU since PyTorch 2.4): one pass over each parameter, as
    ours takes, where the default steps it operation by operation. The stronger of the two references."""
    return run_torch(epochs, fused=True)


def augmentation_seconds_per_epoch():
    """The time the Solver's augmentation (``Solver.augmented``) takes over one epoch's batches, alone."""
    from modules import MLP

    X_train = load_data()[0]
    solver = MLP(**SETTINGS).solver
    batch = SETTINGS["batch_size"]
    started = time.perf_counter()
    for start in range(0, len(X_train), batch):
        solver.augmented(X_train[start:start + batch])
    return time.perf_counter() - started


def layer_pass_milliseconds(repeats=200):
    """Milliseconds of one training forward and backward through one hidden layer's ``BatchNorm`` and ``Dropout``
    (a batch of 128 rows of 1024 features), by their reference formulas and by their fast passes, interleaved, the
    best of three rounds each: ``{"reference": ms, "fast": ms}``."""
    import numpy as np

    from modules import BatchNorm, Dropout

    rng = np.random.default_rng(0)
    bottom, top_diff = (rng.standard_normal((SETTINGS["batch_size"], 1024), dtype=np.float32) for _ in range(2))
    norm, dropout = BatchNorm(1024), Dropout(SETTINGS["dropout"], rng=rng)
    norm.training = dropout.training = True
    ways = {"reference": (norm.reference_forward, norm.reference_backward, dropout.reference_forward),
            "fast": (norm.forward, norm.backward, dropout.forward)}
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(3):
        for name, (forward, backward, drop) in ways.items():
            started = time.perf_counter()
            for _ in range(repeats):
                drop(forward(bottom))
                backward(dropout.backward(top_diff))
            best[name] = min(best[name], 1000 * (time.perf_counter() - started) / repeats)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("frontier_results.json"))
    args = parser.parse_args()

    best = run_benchmark({"numpy MLP": run_numpy_mlp, "matmul floor": run_matmul_floor,
                          "wide network": run_wide_network},
                         {"pytorch": run_torch, "pytorch fused AdamW": run_torch_fused,
                          "pytorch matmul floor": run_torch_matmul_floor},
                         args.epochs, args.repeats, args.output)
    print(f"numpy MLP / matmul floor: {best['numpy MLP'][0] / best['matmul floor'][0]:.2f}")
    augmenting = min(augmentation_seconds_per_epoch() for _ in range(3))
    print(f"augmentation alone: {augmenting:.3f} s an epoch, {augmenting / best['numpy MLP'][0]:.1%} of the recipe's "
          f"epoch and {augmenting / best['wide network'][0]:.1%} of the wide network's (target at most 5%)")
    passes = layer_pass_milliseconds()
    print(f"one layer's batch normalisation and dropout, forward and backward: {passes['reference']:.3f} ms by the "
          f"reference formulas, {passes['fast']:.3f} ms by the fast passes ({passes['reference'] / passes['fast']:.1f}"
          " times as fast)")
    recorded = json.loads(args.output.read_text())
    recorded.pop("machine")
    write_results(args.output, dict(recorded, augmentation_seconds_per_epoch=augmenting, layer_pass_ms=passes))
    if "pytorch" in best:
        print(f"numpy MLP / pytorch: {best['numpy MLP'][0] / best['pytorch'][0]:.2f}, with fused AdamW "
              f"{best['numpy MLP'][0] / best['pytorch fused AdamW'][0]:.2f}  (target at most 0.8); pytorch / "
              f"pytorch matmul floor: {best['pytorch'][0] / best['pytorch matmul floor'][0]:.2f}; matmul floor / "
              f"pytorch matmul floor: {best['matmul floor'][0] / best['pytorch matmul floor'][0]:.2f}")


if __name__ == "__main__":
    main()
