"""Speed of the notebook's "beyond" recipe: modules.MLP against PyTorch on the same work, in one run.

The recipe is ``study.config.WIDE_RECIPE``: [784, 1024, 1024, 10] with ReLU, dropout 0.3 after each hidden layer,
AdamW (lr 1e-3, weight decay 1e-4), a cosine schedule per batch over the recipe's epochs, batch 128, the 6,000
validation rows evaluated every 100 batches. A run here trains only the first few epochs of it: the time per epoch
does not depend on where in the schedule it is.

    python bench/bench_beyond.py [--epochs 1] [--repeats 2] [--output bench/beyond_results.json]
"""

import argparse
from pathlib import Path

from harness import load_data, run_benchmark, train_torch, warm_up

from study.config import WIDE_RECIPE

LAYERS, DROPOUT, LR, WEIGHT_DECAY, PLANNED_EPOCHS, BATCH = (
    WIDE_RECIPE[key] for key in ("layers", "dropout", "lr", "L2_lambda", "max_epoch", "batch_size"))
VAL_EVERY = 100


def run_numpy_mlp(epochs):
    from modules import MLP

    data = load_data()[:4]
    settings = dict(WIDE_RECIPE, print_iter=VAL_EVERY, print_log=False, seed=0)
    warm_up(settings, *data)
    model = MLP(**settings)
    model.train(*data, epochs=epochs)
    return model.train_time_s / epochs, model.best_val_acc


def run_torch(epochs):
    import torch

    def make_schedule(optimizer, batches_per_epoch):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=PLANNED_EPOCHS * batches_per_epoch)

    return train_torch(LAYERS, epochs, BATCH, VAL_EVERY,
                       lambda params: torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY), make_schedule,
                       dropout=DROPOUT)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("beyond_results.json"))
    args = parser.parse_args()

    best = run_benchmark({"numpy MLP": run_numpy_mlp}, {"pytorch": run_torch}, args.epochs, args.repeats, args.output)
    if "pytorch" in best:
        print(f"numpy MLP / pytorch: {best['numpy MLP'][0] / best['pytorch'][0]:.2f}  (target at most 0.85)")

if __name__ == "__main__":
    main()
