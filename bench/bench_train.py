"""Training speed and memory of modules.MLP, against PyTorch and against the bare matrix products, in one run.

The work is the issue's: [784, 256, 128, 10] with ReLU, batch 100, lr 0.1, step decay 0.95 every 500 batches, 54,000
training rows, the 6,000 validation rows evaluated every 100 batches. Each contender runs in a fresh child process
(so that its peak resident memory is its own), the contenders alternate, and each keeps its fastest repeat: on a
shared machine the minimum is the least disturbed measurement. Seconds mean little across machines; the ratios
printed at the end are what to compare.

    python bench/bench_train.py [--epochs 3] [--repeats 3] [--output bench/results.json]

The figures also go to a JSON file, from which `python -m study.report` writes the README's benchmark table.
"""

import argparse
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
from harness import load_data, matmul_floor, run_benchmark, train_torch, warm_up

LAYERS = [784, 256, 128, 10]
BATCH, LR, DECAY_FACTOR, DECAY_STEPS, VAL_EVERY = 100, 0.1, 0.95, 500, 100


def run_numpy_mlp(epochs):
    from modules import MLP

    data = load_data()[:4]
    settings = dict(layers=LAYERS, lr=LR, batch_size=BATCH, decay_factor=DECAY_FACTOR, decay_steps=DECAY_STEPS,
                    print_iter=VAL_EVERY, print_log=False, seed=0)
    warm_up(settings, *data)
    model = MLP(**dict(settings, max_epoch=epochs))
    model.train(*data)
    return model.train_time_s / epochs, model.best_val_acc


def run_matmul_floor(epochs):
    """The matrix products of the same work and nothing else: what no implementation on this BLAS can beat."""
    return matmul_floor(LAYERS, BATCH, VAL_EVERY, epochs)


def run_bare_numpy(epochs):
    """The same training written as one flat loop with no layer objects: what the MLP's structure costs."""
    X_train, y_train, X_val, _, _ = load_data()
    rng = np.random.default_rng(0)
    weights = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32) for a, b in pairwise(LAYERS)]
    biases = [np.zeros(b, dtype=np.float32) for b in LAYERS[1:]]
    W1, W2, W3 = weights
    b1, b2, b3 = biases
    rows = np.arange(BATCH)
    started = time.perf_counter()
    iteration = 0
    for _ in range(epochs):
        order = rng.permutation(len(X_train))
        for start in range(0, len(X_train), BATCH):
            batch = order[start:start + BATCH]
            x, labels = X_train[batch], y_train[batch]
            lr = LR * DECAY_FACTOR ** (iteration // DECAY_STEPS)
            h1 = np.maximum(x @ W1 + b1, 0)
            h2 = np.maximum(h1 @ W2 + b2, 0)
            logits = h2 @ W3 + b3
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            probs[rows, labels] -= 1
            d3 = probs / BATCH
            d2 = (d3 @ W3.T) * (h2 > 0)
            d1 = (d2 @ W2.T) * (h1 > 0)
            for param, grad in ((W3, h2.T @ d3), (b3, d3.sum(0)), (W2, h1.T @ d2), (b2, d2.sum(0)),
                                (W1, x.T @ d1), (b1, d1.sum(0))):
                param -= lr * grad
            iteration += 1
            if iteration % VAL_EVERY == 0:
                np.maximum(np.maximum(X_val @ W1 + b1, 0) @ W2 + b2, 0) @ W3 + b3
    return (time.perf_counter() - started) / epochs, float("nan")


def run_torch(epochs):
    import torch

    return train_torch(LAYERS, epochs, BATCH, VAL_EVERY, lambda params: torch.optim.SGD(params, lr=LR),
                       lambda optimizer, _: torch.optim.lr_scheduler.StepLR(optimizer, DECAY_STEPS, DECAY_FACTOR))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()

    contenders = {"numpy MLP": run_numpy_mlp, "bare numpy loop": run_bare_numpy, "matmul floor": run_matmul_floor}
    best = run_benchmark(contenders, {"pytorch": run_torch}, args.epochs, args.repeats, args.output)
    numpy_seconds = best["numpy MLP"][0]
    print(f"numpy MLP / matmul floor: {numpy_seconds / best['matmul floor'][0]:.2f}  (target at most 1.6)")
    print(f"numpy MLP / bare numpy loop: {numpy_seconds / best['bare numpy loop'][0]:.2f}")
    if "pytorch" in best:
        print(f"numpy MLP / pytorch: {numpy_seconds / best['pytorch'][0]:.2f}")
    mlp_mb, floor_mb = best["numpy MLP"][2], best["matmul floor"][2]
    print(f"numpy MLP peak memory: {mlp_mb:.0f} MB, {mlp_mb - floor_mb:.0f} MB above the matmul floor's process, "
          "which holds the same data")

if __name__ == "__main__":
    main()
